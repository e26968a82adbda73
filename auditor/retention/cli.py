"""`auditor retention plan|apply` and `auditor hold place|release|list` (docs/retention.md).

Run them as a login in auditor_retention (`auditor db grant-login retention --user NAME`)."""

from __future__ import annotations

import getpass
import json
import logging
import os
import sys
from datetime import UTC, datetime

import click

from auditor.config import Settings
from auditor.db import connect
from auditor.errors import UserError
from auditor.retention import holds, purge
from auditor.retention.plan import Plan, make_plan
from auditor.retention.settings import RetentionSettings, parse_age
from auditor.store import sealer

_TIME = click.DateTime(formats=["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S%z", "%Y-%m-%d"])


def _settings(older_than: str | None) -> RetentionSettings:
    configured = RetentionSettings.from_env(os.environ)
    return configured.with_default(None if older_than is None else parse_age(older_than))


def _operator() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (a container)
        return "unknown"


def _print_plan(plan: Plan, as_json: bool) -> None:
    if as_json:
        body = {
            "settings": plan.settings.as_json(),
            "partitions": [d.as_json() for d in plan.decisions],
            "default_partition_rows_past_keep": plan.default_rows_past_keep,
        }
        click.echo(json.dumps(body, indent=2))
        return
    for d in plan.decisions:
        verb = "DROP" if d.drop else "keep"
        click.echo(f"{verb} {d.partition}  {d.rows:>10,} rows  {d.reason}")
    dropping = plan.to_drop
    rows = sum(d.rows for d in dropping)
    click.echo(f"{len(dropping)} of {len(plan.decisions)} partitions would go ({rows:,} rows)")
    if plan.default_rows_past_keep:
        click.echo(
            f"events_default holds {plan.default_rows_past_keep:,} rows past the keep;"
            " retention never drops the default partition"
        )


@click.group("retention")
def retention_group() -> None:
    """Drop monthly events partitions past their keep, never under a legal hold."""


@retention_group.command("plan")
@click.option("--older-than", metavar="AGE", help="keep this much (24mo, 2y); default: the setting")
@click.option("--json", "as_json", is_flag=True, help="print the plan as JSON")
def plan_command(older_than: str | None, as_json: bool) -> None:
    """List every monthly partition with its rows and whether it would go, and why."""
    settings = _settings(older_than)
    with connect(Settings.from_env(os.environ).database_url, autocommit=True) as conn:
        plan = make_plan(conn, settings, datetime.now(UTC))
    _print_plan(plan, as_json)


@retention_group.command("apply")
@click.option("--older-than", metavar="AGE", help="keep this much (24mo, 2y); default: the setting")
@click.option("--yes", is_flag=True, help="really drop (without it: a dry run, logged as one)")
def apply_command(older_than: str | None, yes: bool) -> None:
    """Drop the partitions the plan names, each with a purge receipt in the record.

    Without --yes nothing is dropped; the run is logged (table retention_runs) either way.
    """
    settings = _settings(older_than)
    if settings.months is None and not settings.by_media_type:
        raise UserError(
            "AUDITOR_RETENTION_MONTHS is not set and no --older-than was given: nothing to apply"
        )
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    with connect(Settings.from_env(os.environ).database_url, autocommit=True) as conn:
        plan = make_plan(conn, settings, datetime.now(UTC))
        result = purge.apply(conn, plan, _operator(), dry_run=not yes)
    for entry in result.dropped:
        click.echo(
            f"dropped {entry['partition']} ({entry['rows']:,} rows): {entry['reason']};"
            f" purge receipt {entry['receipt']} at position {entry['receipt_position']};"
            f" read in {entry['prepare_seconds']:.1f} s, the writer's lock held"
            f" {entry['locked_seconds']:.1f} s"
            + (f", {entry['late_events']} late events taken in" if entry["late_events"] else "")
        )
    for entry in result.kept:
        click.echo(f"kept {entry['partition']} ({entry['rows']:,} rows): {entry['reason']}")
    mode = "" if yes else " (dry run: nothing dropped; add --yes)"
    click.echo(f"retention run {result.run_id}: {len(result.dropped)} dropped{mode}")


@click.group("hold")
def hold_group() -> None:
    """Legal holds: what retention must keep."""


def _split(values: tuple[str, ...]) -> list[str] | None:
    found = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return found or None


@hold_group.command("place")
@click.option("--reason", required=True, help="why the records are held (e.g. the case)")
@click.option("--interaction", "interactions", multiple=True, help="interaction id (repeatable)")
@click.option("--reference-id", "references", multiple=True, help="referenceId (repeatable)")
@click.option("--account", help="the agent account")
@click.option("--media-type", help="the mediaType")
@click.option("--from", "start", type=_TIME, help="received at or after (with time zone)")
@click.option("--to", "end", type=_TIME, help="received before (with time zone)")
@click.option("--by", "placed_by", help="who places it (default: the OS user)")
def hold_place(
    reason: str,
    interactions: tuple[str, ...],
    references: tuple[str, ...],
    account: str | None,
    media_type: str | None,
    start: datetime | None,
    end: datetime | None,
    placed_by: str | None,
) -> None:
    """Place a hold: events matching every part given are kept by retention."""
    spec = holds.HoldSpec(
        reason,
        _split(interactions),
        _split(references),
        account,
        media_type,
        _utc(start),
        _utc(end),
    )
    with connect(Settings.from_env(os.environ).database_url) as conn:
        hold_id = holds.place(conn, spec, placed_by or _operator())
        sealer.seal(conn, ("hold",))
        conn.commit()
    click.echo(f"legal hold {hold_id} placed and entered into the record")


def _utc(value: datetime | None) -> datetime | None:
    # A date alone (2024-01-01) is midnight UTC.
    return None if value is None else value if value.tzinfo else value.replace(tzinfo=UTC)


@hold_group.command("release")
@click.argument("hold_id", type=click.IntRange(1, 2**63 - 1))
@click.option("--reason", required=True, help="why the hold ends")
@click.option("--by", "released_by", help="who releases it (default: the OS user)")
def hold_release(hold_id: int, reason: str, released_by: str | None) -> None:
    """Release a hold; the next retention run may drop what it kept."""
    with connect(Settings.from_env(os.environ).database_url) as conn:
        release_id = holds.release(conn, hold_id, released_by or _operator(), reason)
        sealer.seal(conn, ("release",))
        conn.commit()
    click.echo(f"legal hold {hold_id} released (release {release_id}, in the record)")


@hold_group.command("list")
@click.option("--active", is_flag=True, help="only holds not released")
@click.option("--json", "as_json", is_flag=True)
def hold_list(active: bool, as_json: bool) -> None:
    """List legal holds."""
    with connect(Settings.from_env(os.environ).database_url) as conn:
        found = holds.listing(conn, active_only=active)
    if as_json:
        click.echo(json.dumps([h.as_json() for h in found], indent=2))
        return
    for h in found:
        state = "active" if h.active else f"released {h.released_at:%Y-%m-%d} by {h.released_by}"
        click.echo(f"{h.id}: {state}; placed by {h.placed_by}: {h.reason}")
