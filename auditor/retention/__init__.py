"""Retention with legal hold (issue 17; docs/retention.md): monthly events partitions dropped
on schedule, never while a hold matches one of their rows, each leaving a purge receipt in
the record so that `auditor verify` still succeeds and says what was purged."""
