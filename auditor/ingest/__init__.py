"""Ingestion: one CometD session per agent account → durable spool → PostgreSQL."""
