"""`auditor simulate`: run the GWS simulator until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from datetime import datetime
from pathlib import Path

import click

from auditor.simulator.app import serve
from auditor.simulator.config import DEFAULT_PASSWORD, PASSWORD_ENV, TRANSPORTS, SimConfig


def _csv(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


async def _run(config: SimConfig) -> None:
    runner, sim, url = await serve(config)
    click.echo(
        f"GWS simulator on {url} ({config.agents} agents, {config.rate:g} notifications/s"
        f"{' per agent' if config.per_agent else ''}, seed {config.seed}); "
        f"CometD at {url}/api/v2/notifications, control at {url}/sim/stats",
        err=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        click.echo(
            f"stopped: {sim.seq} notifications emitted, {sim.ground_truth.delivered} delivered, "
            f"{sim.ground_truth.undeliverable} undeliverable",
            err=True,
        )


@click.command("simulate")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8090, show_default=True, type=click.IntRange(0, 65535))
@click.option("--agents", default=10, show_default=True, type=click.IntRange(1, 100_000))
@click.option(
    "--password",
    envvar=PASSWORD_ENV,
    default=DEFAULT_PASSWORD,
    show_default=True,
    help=f"Password of every agent account (or ${PASSWORD_ENV}).",
)
@click.option(
    "--rate",
    default=10.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Generated notifications per second (all agents; 0: none).",
)
@click.option("--per-agent", is_flag=True, help="--rate is per agent, not overall.")
@click.option(
    "--media-types", default="workitem", show_default=True, help="Comma-separated Open Media types."
)
@click.option("--seed", default=1, show_default=True, type=int)
@click.option("--count", type=click.IntRange(1), help="Stop generating after N notifications.")
@click.option("--csrf/--no-csrf", default=True, show_default=True)
@click.option("--csrf-on-cometd", is_flag=True, help="Also demand the CSRF token on CometD POSTs.")
@click.option(
    "--transports",
    default=",".join(TRANSPORTS),
    show_default=True,
    help="Comma-separated: long-polling, websocket.",
)
@click.option("--timeout-ms", default=30_000, show_default=True, type=click.IntRange(0))
@click.option("--interval-ms", default=0, show_default=True, type=click.IntRange(0))
@click.option("--max-interval-ms", default=10_000, show_default=True, type=click.IntRange(1))
@click.option(
    "--hold-first-connect",
    is_flag=True,
    help="Hold the first /meta/connect like later ones (CometD 3 answers it at once).",
)
@click.option(
    "--meta-connect-delivery-only",
    is_flag=True,
    help="Deliver only on /meta/connect replies (CometD 3 default: any reply).",
)
@click.option(
    "--ack/--no-ack",
    default=True,
    show_default=True,
    help="Offer the CometD ack extension to clients that ask for it.",
)
@click.option("--error-rate", default=0.02, show_default=True, type=click.FloatRange(0, 1))
@click.option("--malformed-rate", default=0.0, show_default=True, type=click.FloatRange(0, 1))
@click.option(
    "--invite-reference-id",
    type=click.Choice(["absent", "null"]),
    default="absent",
    show_default=True,
    help="referenceId on unsolicited Invited notifications.",
)
@click.option(
    "--error-openmedia/--no-error-openmedia",
    default=True,
    show_default=True,
    help="Include the openmedia resource in Error notifications.",
)
@click.option(
    "--ground-truth",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append every delivered/undeliverable notification to this NDJSON file.",
)
@click.option(
    "--clock-start",
    type=click.DateTime(),
    help="Start of the virtual clock for receivedDate (default: now).",
)
@click.option("--public-url", help="Base of `uri` fields (default: the bound http://host:port).")
@click.option(
    "--expire-every",
    default=0.0,
    type=click.FloatRange(0),
    help="Fault: expire all CometD sessions every N seconds.",
)
@click.option(
    "--restart-every",
    default=0.0,
    type=click.FloatRange(0),
    help="Fault: restart the CometD layer every N seconds.",
)
@click.option(
    "--drop-every",
    default=0.0,
    type=click.FloatRange(0),
    help="Fault: drop held connections every N seconds.",
)
@click.option(
    "--stall-every",
    default=0.0,
    type=click.FloatRange(0),
    help="Fault: stall all responses every N seconds (for --stall-for seconds).",
)
@click.option("--stall-for", default=0.0, type=click.FloatRange(0))
def simulate(
    host: str,
    port: int,
    agents: int,
    password: str,
    rate: float,
    per_agent: bool,
    media_types: str,
    seed: int,
    count: int | None,
    csrf: bool,
    csrf_on_cometd: bool,
    transports: str,
    timeout_ms: int,
    interval_ms: int,
    max_interval_ms: int,
    hold_first_connect: bool,
    meta_connect_delivery_only: bool,
    ack: bool,
    error_rate: float,
    malformed_rate: float,
    invite_reference_id: str,
    error_openmedia: bool,
    ground_truth: Path | None,
    clock_start: datetime | None,
    public_url: str | None,
    expire_every: float,
    restart_every: float,
    drop_every: float,
    stall_every: float,
    stall_for: float,
) -> None:
    """Run a GWS look-alike: REST login, CometD, Open Media lifecycles, faults."""
    chosen = _csv(transports)
    unknown = [t for t in chosen if t not in TRANSPORTS]
    if unknown or not chosen:
        raise click.BadParameter(f"choose from {', '.join(TRANSPORTS)}", param_hint="--transports")
    kinds = _csv(media_types)
    if not kinds:
        raise click.BadParameter("name at least one media type", param_hint="--media-types")
    config = SimConfig(
        host=host,
        port=port,
        agents=agents,
        password=password,
        rate=rate,
        per_agent=per_agent,
        media_types=kinds,
        seed=seed,
        count=count,
        csrf=csrf,
        csrf_on_cometd=csrf_on_cometd,
        transports=chosen,
        timeout_ms=timeout_ms,
        interval_ms=interval_ms,
        max_interval_ms=max_interval_ms,
        first_connect_immediate=not hold_first_connect,
        meta_connect_delivery_only=meta_connect_delivery_only,
        ack_extension=ack,
        error_rate=error_rate,
        malformed_rate=malformed_rate,
        invite_reference_id="null" if invite_reference_id == "null" else "absent",
        error_includes_openmedia=error_openmedia,
        ground_truth=ground_truth,
        clock_start=clock_start,
        public_url=public_url,
        expire_every=expire_every,
        restart_every=restart_every,
        drop_every=drop_every,
        stall_every=stall_every,
        stall_for=stall_for,
    )
    try:
        asyncio.run(_run(config))
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {host}:{port}: {exc.strerror}") from None
