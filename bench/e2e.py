"""End to end on loopback: simulator → worker → PostgreSQL (embedded), against the simulator's
ground truth. Prints one table:

* sustained notifications/s with 100 agents (simulator offered rate; stored/s over the run
  and the catch-up), lost and duplicated counts, worker peak RSS;
* receipt → committed latency p50/p99 at 1,000/s (worker in-process: the drain's commit hook
  records, per receipt, commit time - received_at);
* `--sessions N` idle sessions (the simulator holds long-polls 30 s, so the worker's
  poll_timeout sets the cycle): time until all are subscribed, set-ups/s, RSS, long-poll
  connects/s and the worker's idle CPU (per cycle and in cores), SIGTERM time;
* worker CPU per stored notification at 1,000/s over each of `--notify-agents` (receive,
  spool and drain: the worker and its drain process; PostgreSQL and the simulator excluded),
  stored = delivered checked;
* `--drop-sessions N` (5,000) subscribed sessions all lost at once (simulator restart): time
  until all are back, handshakes per account, peak set-ups at once;
* `--soak-minutes M`: 1,000/s over 1,000 agents, RSS every 30 s (the worker's and its drain
  process's apart), growth after 5 minutes; `--tracemalloc SECONDS` adds the allocation
  sites that grew in both processes (AUDITOR_TRACEMALLOC, auditor/ingest/memtrace.py);
* worker RSS while draining a 1,000,000-row spool backlog (filled directly), and its drain rate.

    python bench/e2e.py [--rate 12000] [--seconds 15] [--sessions 10000] [--backlog 1000000]
        [--notify-agents 100,10000] [--notify-seconds 60] [--soak-minutes 30 [--tracemalloc 60]]
        [--drop-sessions 5000] [--only throughput,latency,sessions,drop,notify,soak,backlog]

Interrupted (Ctrl-C, SIGTERM), it kills its simulator and workers (they also get SIGKILL
from the kernel if the benchmark itself dies: PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import URL

from auditor.config import libpq_conninfo, parse_database_url
from auditor.ingest import config as worker_config
from auditor.ingest.drain import BatchReport
from auditor.ingest.spool import Row, Spool, SpoolReader
from auditor.ingest.worker import Worker
from auditor.pgserver import EmbeddedPostgres
from auditor.ports import free_port
from auditor.roles import grant_login
from auditor.store import schema
from auditor.store.receipts import new_receipt_id

AUDITOR = str(Path(sys.executable).parent / "auditor")
PASSWORD = "secret"  # noqa: S105  (the simulator's documented default)
WORKER_LOGIN = "bench_worker"  # a login in auditor_writer, made in each fresh database


def _rss_mb(pid: int, children: bool = True) -> float:
    """Resident memory of a process and (unless not `children`) its children: the worker
    and its drain process."""
    total = 0.0
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) / 1024
        if not children:
            return total
        for task in Path(f"/proc/{pid}/task").iterdir():
            for child in (task / "children").read_text().split():
                total += _rss_mb(int(child))
    except FileNotFoundError:
        pass
    return total


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL when the benchmark dies, however it dies."""
    import ctypes

    ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _prioritised(nice: int) -> None:
    """In the simulator before exec: die with the benchmark, run at niceness `nice`."""
    _die_with_parent()
    os.setpriority(os.PRIO_PROCESS, 0, nice)


def _variant(spec: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """`name:gws.key=value,worker.key=value` -> (name, [gws] settings, [worker] settings);
    values are JSON (1.0, true, "x") or else plain text."""
    name, _, rest = spec.partition(":")
    gws: dict[str, Any] = {}
    worker: dict[str, Any] = {}
    for item in filter(None, rest.split(",")):
        key, _, raw = item.partition("=")
        table, _, setting = key.partition(".")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        if table not in ("gws", "worker") or setting not in worker_config.KNOWN_KEYS[table]:
            raise SystemExit(f"--variant {spec}: unknown setting {key}")
        (gws if table == "gws" else worker)[setting] = value
    return name or "default", gws, worker


def _load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    return [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]


def _tree_cpu(pid: int) -> tuple[float, float]:
    """(the process's CPU seconds, its and its children's): the worker and its drain."""
    own = total = _cpu_seconds(pid)
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            total += _cpu_seconds(int(child))
    return own, total


def _stats(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{url}/sim/stats", timeout=30) as response:  # noqa: S310
        result: dict[str, Any] = json.load(response)
    return result


def _control(url: str, action: str) -> None:
    request = urllib.request.Request(f"{url}/sim/{action}", data=b"{}", method="POST")  # noqa: S310
    urllib.request.urlopen(request, timeout=30).close()  # noqa: S310


def _canon(message: dict[str, Any]) -> str:
    return json.dumps({k: v for k, v in message.items() if k != "id"}, sort_keys=True)


class Bench:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.pg = EmbeddedPostgres(work / "pg", durable=False).start()
        self.procs: list[subprocess.Popen[bytes]] = []
        self.db_index = 0
        self.sim_nice: int | None = None  # --sim-nice
        self.worker_nice: int | None = None  # --worker-nice (the notify phase's workers)

    def fresh_db(self) -> URL:
        self.db_index += 1
        name = f"e2e_{self.db_index}"
        admin = libpq_conninfo(parse_database_url(self.pg.url("postgres")))
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
        url = parse_database_url(self.pg.url(name))
        engine = create_engine(url, poolclass=pool.NullPool)
        with engine.begin() as conn:
            schema.upgrade(conn)
        engine.dispose()
        # The worker runs as a login in auditor_writer, as deployed (it refuses a superuser).
        with psycopg.connect(libpq_conninfo(url)) as conn:
            grant_login(conn, "writer", WORKER_LOGIN, PASSWORD)
            conn.commit()
        return url

    def simulator(
        self, agents: int, rate: float, truth: Path | None = None, timeout_ms: int = 2000
    ) -> str:
        """The simulator (GWS stand-in) as a subprocess, paused; with `sim_nice` set (a
        negative niceness needs root), it runs ahead of other work on a shared machine: a
        starved simulator answers long-polls late, expires sessions and offers less than
        asked, which changes what is measured (bench infrastructure, not the worker)."""
        port = free_port()
        args = [
            AUDITOR,
            "simulate",
            "--port",
            str(port),
            "--agents",
            str(agents),
            "--rate",
            str(rate),
            "--error-rate",
            "0",
            "--timeout-ms",
            str(timeout_ms),
        ]
        if truth is not None:
            args += ["--ground-truth", str(truth)]
        nice = self.sim_nice
        proc = subprocess.Popen(
            args,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if nice is None else lambda: _prioritised(nice),
        )
        self.procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                _control(url, "pause")
                return url
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("simulator did not start")

    def config(
        self, name: str, sim_url: str, agents: int, gws: dict[str, Any] | None = None, **worker: Any
    ) -> Path:
        path = self.work / f"{name}.toml"
        lines = [
            "[gws]",
            f'base_url = "{sim_url}"',
            *(f"{k} = {json.dumps(v)}" for k, v in (gws or {}).items()),
            "[worker]",
            f'spool = "{self.work / (name + ".spool")}"',
            "heartbeat_interval = 1.0",
        ]
        lines += [f"{k} = {json.dumps(v)}" for k, v in worker.items()]
        width = max(3, len(str(agents)))
        for i in range(1, agents + 1):
            lines += ["[[accounts]]", f'name = "agent{i:0{width}d}"', 'password_env = "GWS_PW"']
        path.write_text("\n".join(lines) + "\n")
        return path

    def worker(
        self,
        config: Path,
        db: URL,
        src: Path | None = None,
        extra_env: dict[str, str] | None = None,
        nice: int | None = None,
    ) -> subprocess.Popen[bytes]:
        """The worker as a subprocess; with `src`, the `auditor` package from that directory
        (an earlier revision, see --baseline) instead of this tree's."""
        login = db.set(username=WORKER_LOGIN, password=PASSWORD)
        env = dict(os.environ, AUDITOR_DATABASE_URL=login.render_as_string(hide_password=False))
        env |= extra_env or {}
        if src is not None:
            env["PYTHONPATH"] = str(src)
        env["GWS_PW"] = PASSWORD
        with (self.work / (config.stem + ".log")).open("ab") as log:
            proc = subprocess.Popen(
                [AUDITOR, "ingest", "--config", str(config)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=_die_with_parent if nice is None else lambda: _prioritised(nice),
            )
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        self.pg.stop()


def _scalar(db: URL, sql: str) -> int:
    with psycopg.connect(libpq_conninfo(db)) as conn:
        row = conn.execute(sql).fetchone()  # type: ignore[arg-type]
        return int(row[0]) if row and row[0] is not None else 0


def _wait_subscribed(db: URL, agents: int, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    sql = "SELECT count(DISTINCT account) FROM coverage_intervals WHERE ended_at IS NULL"
    while _scalar(db, sql) < agents:
        if time.monotonic() > deadline:
            raise RuntimeError("sessions did not subscribe")
        time.sleep(0.5)


def _notifications(db: URL) -> int:
    return _scalar(db, "SELECT count(*) FROM events WHERE kind = 'notification'")


def _check_truth(
    lines: list[dict[str, Any]], db: URL
) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]], int, int, int]:
    """(delivered, stored, lost, duplicated, stored but not in the truth) against the
    simulator's ground truth; a copy the server saw as "session lost before ack" may be
    stored (only the client knows it reached the spool)."""
    want = Counter((t["agent"], _canon(t["message"])) for t in lines if t["status"] == "delivered")
    maybe = Counter(
        (t["agent"], _canon(t["message"]))
        for t in lines
        if t["status"] == "undeliverable" and t["reason"] == "session lost before ack"
    )
    with psycopg.connect(libpq_conninfo(db)) as conn:
        rows = conn.execute(
            "SELECT account, payload FROM events WHERE kind = 'notification'"
        ).fetchall()
    have = Counter((a, _canon(p)) for a, p in rows)
    lost = sum((want - have).values())
    # The simulator may send identical messages; a duplicate is a copy beyond the truth's.
    dup = sum(
        n - want[k] - maybe[k] for k, n in have.items() if n > want[k] + maybe[k] and k in want
    )
    unexpected = sum((have - want - maybe).values()) - dup
    return want, have, lost, dup, max(0, unexpected)


def throughput(bench: Bench, rate: int, seconds: float, **settings: Any) -> dict[str, str]:
    db = bench.fresh_db()
    truth = bench.work / "truth.ndjson"
    sim = bench.simulator(100, rate, truth)
    worker = bench.worker(bench.config("tp", sim, 100, **settings), db)
    _wait_subscribed(db, 100)
    rss = _rss_mb(worker.pid)
    _control(sim, "resume")
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        time.sleep(0.5)
        rss = max(rss, _rss_mb(worker.pid))
    _control(sim, "pause")
    in_window = _notifications(db)
    last, stable = -1, 0
    while stable < 4:
        count = _notifications(db)
        stable = stable + 1 if count == last else 0
        last = count
        rss = max(rss, _rss_mb(worker.pid))
        time.sleep(0.5)
    elapsed = time.monotonic() - started - 2.0  # the stability wait
    worker.send_signal(signal.SIGTERM)
    worker.wait(60)
    bench.procs[-2].send_signal(signal.SIGTERM)
    bench.procs[-2].wait(30)
    lines = [json.loads(x) for x in truth.read_text().splitlines() if x]
    want, have, lost, dup, unexpected = _check_truth(lines, db)
    generated = len({(t["seq"]) for t in lines})
    return {
        "offered (simulator, 100 agents)": f"{rate:,}/s for {seconds:.0f} s ({generated:,})",
        "stored during the window": f"{in_window / seconds:,.0f}/s",
        "sustained incl. catch-up": f"{last:,} in {elapsed:.1f} s = {last / elapsed:,.0f}/s",
        "delivered (acked) / stored": f"{sum(want.values()):,} / {sum(have.values()):,}",
        "lost (delivered, not stored)": str(lost),
        "duplicated": str(dup),
        "stored but not in truth": str(unexpected),
        "worker peak RSS, 100 sessions": f"{rss:.0f} MB",
    }


def latency(bench: Bench, seconds: float) -> dict[str, str]:
    db = bench.fresh_db()
    sim = bench.simulator(100, 1000)
    config = worker_config.load(
        str(bench.config("lat", sim, 100)),
        {"GWS_PW": PASSWORD, "AUDITOR_DATABASE_URL": db.render_as_string(hide_password=False)},
    )
    samples: list[float] = []
    recording = threading.Event()

    def on_commit(report: BatchReport) -> None:
        if recording.is_set():
            samples.extend(report.committed - at for at in report.received_at)

    async def run() -> None:
        worker = Worker(config, on_commit)
        task = asyncio.create_task(worker.run())
        await asyncio.to_thread(_wait_subscribed, db, 100)
        await asyncio.to_thread(_control, sim, "resume")
        await asyncio.sleep(2)
        recording.set()
        await asyncio.sleep(seconds)
        recording.clear()
        worker.stop.set()
        await task
        if worker.watchdog is not None:
            worker.watchdog.cancel()

    asyncio.run(run())
    samples.sort()
    q = statistics.quantiles(samples, n=100)
    value = f"p50 {q[49] * 1000:.1f} ms, p99 {q[98] * 1000:.1f} ms ({len(samples):,} receipts)"
    return {"latency at 1,000/s (receipt -> committed)": value}


def many_sessions(
    bench: Bench, sessions: int, idle_seconds: float = 60, profile: Path | None = None
) -> dict[str, str]:
    db = bench.fresh_db()
    # The simulator holds a long-poll up to 30 s (GWS's default), so each idle session cycles
    # every poll_timeout (10 s by default): the steady load of a real centre at night.
    sim = bench.simulator(sessions, 0, timeout_ms=30_000)
    sim_pid = bench.procs[-1].pid
    worker = bench.worker(bench.config("many", sim, sessions), db)
    started = time.monotonic()
    raw = None if profile is None else profile / f"setup{sessions}.txt"
    spy = None if raw is None else _profile(worker.pid, 60, raw)  # the first minute of set-up
    _wait_subscribed(db, sessions, timeout=900)
    took = time.monotonic() - started
    if spy is not None and raw is not None:
        _finish_profile(spy)
        if raw.exists():
            print(f"profile, set-up of {sessions:,} sessions:\n{profile_top(raw)}", file=sys.stderr)
    rss = _rss_mb(worker.pid)
    time.sleep(12)  # one poll_timeout: the set-up phase's snapshots and log rows settle
    before, sim_before, cpu_before = _stats(sim), _cpu_seconds(sim_pid), _tree_cpu(worker.pid)
    window_start = time.monotonic()
    while time.monotonic() - window_start < idle_seconds:
        time.sleep(1)
        rss = max(rss, _rss_mb(worker.pid))
    window = time.monotonic() - window_start
    after, sim_after, cpu_after = _stats(sim), _cpu_seconds(sim_pid), _tree_cpu(worker.pid)
    cycles = after["connects"] - before["connects"]
    own = cpu_after[0] - cpu_before[0]
    total = cpu_after[1] - cpu_before[1]
    restarts = after["handshakes"] - before["handshakes"]
    stop_started = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    code = worker.wait(120)
    stopped = time.monotonic() - stop_started
    n = f"{sessions:,} idle sessions"
    return {
        f"{n}: all subscribed in": f"{took:.0f} s ({sessions / took:,.0f} set-ups/s)",
        f"{n}: worker RSS (incl. drain process)": f"{rss:.0f} MB ({rss * 1024 / sessions:.0f} KB"
        " per session)",
        f"{n}: long-poll connects/s": f"{cycles / window:,.0f} (poll_timeout 10 s)",
        f"{n}: worker CPU idle": f"{own / window:.2f} cores = {own / cycles * 1e6:.0f} µs per"
        f" cycle (with drain process {total / window:.2f} cores)",
        f"{n}: simulator CPU idle": f"{(sim_after - sim_before) / window:.2f} cores",
        f"{n}: session restarts while idle": str(restarts),
        f"{n}: SIGTERM to exit": f"{stopped:.1f} s (exit {code})",
    }


def mass_drop(bench: Bench, sessions: int) -> dict[str, str]:
    """Every session lost at once (the simulator's CometD layer restarts): how long until all
    are subscribed again, and how many handshakes that took (a storm would be many more than
    one per account)."""
    db = bench.fresh_db()
    sim = bench.simulator(sessions, 0, timeout_ms=30_000)
    port = free_port()
    worker = bench.worker(bench.config("drop", sim, sessions, metrics_port=port), db)
    _wait_subscribed(db, sessions, timeout=900)
    time.sleep(12)
    before = _stats(sim)
    dropped_at = datetime.now(UTC)
    started = time.monotonic()
    _control(sim, "restart")
    peak = 0.0
    sql = (
        "SELECT count(DISTINCT account) FROM coverage_intervals WHERE ended_at IS NULL"
        f" AND started_at > '{dropped_at.isoformat()}'"
    )
    while _scalar(db, sql) < sessions:
        if time.monotonic() - started > 900:
            break
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
            for line in r.read().decode().splitlines():
                if line.startswith("auditor_setups_in_progress "):
                    peak = max(peak, float(line.split()[1]))
        time.sleep(1)
    took = time.monotonic() - started
    back = _scalar(db, sql)
    after = _stats(sim)
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    label = f"{sessions:,} sessions dropped at once"
    return {
        f"{label}: back": f"{back:,} in {took:.0f} s",
        f"{label}: handshakes": f"{after['handshakes'] - before['handshakes']:,}"
        f" ({(after['handshakes'] - before['handshakes']) / sessions:.2f} per account),"
        f" peak {peak:.0f} set-ups at once",
    }


def _profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    """py-spy (a separate tool, not a dependency: `pip install py-spy`, or PY_SPY=path)
    sampling the worker for `seconds`, as collapsed stacks; None when it is not installed."""
    spy = os.environ.get("PY_SPY") or shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: no profile", file=sys.stderr)
        return None
    command = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250"]
    command += ["--format", "raw", "--output", str(out), "--nonblocking"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _finish_profile(spy: subprocess.Popen[bytes]) -> None:
    """Wait for py-spy to write its profile; on a loaded machine that took over a minute
    once, which must not end the benchmark (the profile is then missing, not the numbers)."""
    try:
        spy.wait(300)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()
        print("py-spy did not finish: no profile", file=sys.stderr)


def profile_top(raw: Path, count: int = 15) -> str:
    """The frames holding most samples (inclusive: anywhere on the stack, once per sample),
    and the functions most often running themselves (self), from py-spy's collapsed stacks."""
    inclusive: dict[str, int] = {}
    own: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack:
            continue
        samples = int(number)
        total += samples
        frames = stack.split(";")
        for frame in set(frames):
            inclusive[frame] = inclusive.get(frame, 0) + samples
        own[frames[-1]] = own.get(frames[-1], 0) + samples
    out = [f"{total} samples; inclusive:"]
    for frame, n in sorted(inclusive.items(), key=lambda kv: -kv[1])[:count]:
        out.append(f"  {n / total:6.1%}  {frame}")
    out.append("self:")
    for frame, n in sorted(own.items(), key=lambda kv: -kv[1])[:count]:
        out.append(f"  {n / total:6.1%}  {frame}")
    return "\n".join(out)


def per_connect(path: Path, count: int = 40, per: int | None = None, own: bool = False) -> str:
    """The functions with most cumulative CPU time (`own`: time in the function itself) in
    a cProfile of the worker (AUDITOR_CPROFILE, auditor/ingest/cpuprofile.py), each as µs
    per /meta/connect sent (the calls of aiocometd's `_connect`), or per `per` (e.g.
    notifications stored), and calls per unit (a coroutine counts once per resumption).
    The notify phase profiles its measuring window only."""
    import pstats

    table = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    connects = per or sum(
        calls[1]
        for (file, _, name), calls in table.items()
        if name == "_connect" and file.endswith("transports/base.py")
    )
    connects = max(connects, 1)
    column = 2 if own else 3
    rows = sorted(table.items(), key=lambda kv: -kv[1][column])[:count]
    unit = "unit" if per else "connect"
    kind = "own" if own else "cumulative"
    out = [f"{connects:,} {unit}s; {kind} µs per {unit}, calls per {unit}, function"]
    for (file, line, name), values in rows:
        calls, spent = values[1], values[column]
        where = "/".join(Path(file).parts[-2:]) if file != "~" else ""
        out.append(
            f"  {spent / connects * 1e6:9.1f}  {calls / connects:7.2f}  {name} {where}:{line}"
        )
    return "\n".join(out)


def checkout(work: Path, revision: str) -> Path:
    """The `auditor` package of an earlier revision, for a before/after in the same run."""
    target = work / f"src-{revision}"
    if target.exists():  # one extraction serves every --notify-agents value
        return target
    target.mkdir()
    root = Path(__file__).resolve().parents[1]
    archive = subprocess.run(
        ["git", "-C", str(root), "archive", revision, "auditor"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target


def notify_cost(
    bench: Bench,
    agents: int,
    seconds: float,
    profile: Path | None = None,
    src: Path | None = None,
    label: str = "",
    rate: int = 1000,
    gws: dict[str, Any] | None = None,
    settings: dict[str, Any] | None = None,
    cprofile: Path | None = None,
) -> dict[str, str]:
    """Worker CPU per stored notification at `rate`/s spread over `agents` agents; `gws`
    and `settings` ([worker]) are the variant's settings (--variant)."""
    db = bench.fresh_db()
    run = f"notify{agents}-{bench.db_index}"  # files of their own per run (rounds)
    truth = bench.work / f"truth-{run}.ndjson"
    sim = bench.simulator(agents, rate, truth, timeout_ms=30_000)
    sim_proc = bench.procs[-1]
    setup_started = time.monotonic()
    config = bench.config(run, sim, agents, gws, **(settings or {}))
    stats = None if cprofile is None else cprofile / f"{run}.pstats"
    # Profiled in the measuring window only (SIGUSR1 .. SIGUSR2, cpuprofile.py).
    env = (
        None if stats is None else {"AUDITOR_CPROFILE": str(stats), "AUDITOR_CPROFILE_WINDOW": "1"}
    )
    worker = bench.worker(config, db, src, extra_env=env, nice=bench.worker_nice)
    _wait_subscribed(db, agents, timeout=900)
    setup = time.monotonic() - setup_started  # the simulator is paused: no notifications yet
    time.sleep(5)
    _control(sim, "resume")
    time.sleep(10)  # the first notifications' snapshots of new items, the drain warm
    stored_before, cpu_before = _notifications(db), _tree_cpu(worker.pid)
    sim_stats = _stats(sim)
    connects_before, sim_before = sim_stats["connects"], _cpu_seconds(sim_proc.pid)
    emitted_before, acked_before = sim_stats["emitted"], sim_stats["delivered"]
    load_before = _load()
    rss_start = _rss_mb(worker.pid)
    started = time.monotonic()
    raw = None if profile is None else profile / f"{run}.txt"
    spy = None if raw is None else _profile(worker.pid, seconds, raw)
    drain_raw = None if profile is None else profile / f"{run}-drain.txt"
    drain_pids = _children(worker.pid)
    if stats is not None:
        for pid in (worker.pid, *drain_pids):
            os.kill(pid, signal.SIGUSR1)
    drain_spy = None
    if drain_raw is not None and drain_pids:
        drain_spy = _profile(drain_pids[0], seconds, drain_raw)
    time.sleep(seconds)
    if stats is not None:
        for pid in (worker.pid, *drain_pids):
            os.kill(pid, signal.SIGUSR2)
    stored_after, cpu_after = _notifications(db), _tree_cpu(worker.pid)
    for one, path, what in ((spy, raw, "worker"), (drain_spy, drain_raw, "drain process")):
        if one is not None and path is not None:
            _finish_profile(one)
            if path.exists():
                print(
                    f"profile ({what}), {rate:,}/s over {agents:,} agents:\n{profile_top(path)}",
                    file=sys.stderr,
                )
    sim_stats = _stats(sim)
    connects = sim_stats["connects"] - connects_before
    emitted = sim_stats["emitted"] - emitted_before
    acked = sim_stats["delivered"] - acked_before
    sim_cpu = _cpu_seconds(sim_proc.pid) - sim_before
    window = time.monotonic() - started
    # Behind at the end of the window: queued at the server, and received but not yet
    # stored (the spool's depth): a worker or drain that cannot keep up shows here.
    reader = SpoolReader(config.parent / f"{run}.spool")
    spool_depth = reader.depth()
    reader.close()
    rss_end = _rss_mb(worker.pid)
    _control(sim, "pause")
    stored = stored_after - stored_before
    own = cpu_after[0] - cpu_before[0]
    total = cpu_after[1] - cpu_before[1]
    lost = _settle(bench, sim_proc, db, worker, truth, config.parent / f"{run}.spool")
    if stats is not None and stats.exists():
        print(f"cProfile (worker), {rate:,}/s over {agents:,} agents{label}:", file=sys.stderr)
        # per long-poll cycle of the window, as the simulator counted them (a coroutine's
        # calls in cProfile are its resumptions)
        print(per_connect(stats, per=connects), file=sys.stderr)
        print(per_connect(stats, count=60, per=connects, own=True), file=sys.stderr)
    drain_stats = None if stats is None else stats.with_suffix(".pstats.drain")
    if drain_stats is not None and drain_stats.exists():
        print(f"cProfile (drain process){label}, µs per stored notification:", file=sys.stderr)
        # the window's: what it stored between the two signals
        print(per_connect(drain_stats, per=stored_after - stored_before), file=sys.stderr)
    label = f"{rate:,}/s over {agents:,} agents{label}"
    return {
        f"{label}: stored": f"{stored / window:,.0f}/s over {window:.0f} s"
        f" ({connects / window:,.0f} long-poll cycles/s)",
        f"{label}: CPU per stored notification": f"{total / stored * 1e6:.0f} µs (worker"
        f" {own / stored * 1e6:.0f} µs + drain process {(total - own) / stored * 1e6:.0f} µs;"
        f" {stored / max(connects, 1):.1f} notifications per long-poll cycle)",
        f"{label}: offered, acknowledged; behind at the end": f"{emitted / window:,.0f}/s"
        f" offered, {acked / window:,.0f}/s acknowledged to the server (CPU per acknowledged"
        f" notification {total / max(acked, 1) * 1e6:.0f} µs); {sim_stats['queued']:,} queued"
        f" at the server, {spool_depth:,} in the spool",
        f"{label}: worker CPU per long-poll cycle": f"{own / max(connects, 1) * 1e6:.0f} µs"
        f" ({own / window:.2f} cores; drain process {(total - own) / window:.2f} cores)",
        f"{label}: simulator CPU, load average": f"{sim_cpu / window:.2f} cores; load"
        f" {load_before} -> {_load()}",
        f"{label}: all subscribed in": f"{setup:.0f} s ({agents / setup:,.0f} set-ups/s)",
        f"{label}: worker RSS": f"{rss_start:.0f} -> {rss_end:.0f} MB",
        f"{label}: against the ground truth": lost,
    }


def _settle(
    bench: Bench,
    sim_proc: subprocess.Popen[bytes],
    db: URL,
    worker: subprocess.Popen[bytes],
    truth: Path,
    spool: Path | None = None,
) -> str:
    """Stop the worker once everything is stored, then the simulator (which flushes its
    ground truth), and compare: lost, duplicated, stored but not in the truth. With
    `spool`, first wait (at most 15 minutes) until the spool is empty: a drain that fell
    behind on a loaded machine must not be stopped with rows still in the spool (they are
    durable there, but not yet in PostgreSQL, and would count as lost), and what is left
    at the end is reported."""
    last, stable = -1, 0
    reader = None if spool is None else SpoolReader(spool)
    deadline = time.monotonic() + 900
    while stable < 4:
        count = _notifications(db)
        empty = reader is None or reader.depth() == 0 or time.monotonic() > deadline
        stable = stable + 1 if count == last and empty else 0
        last = count
        time.sleep(0.5)
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    left = 0
    if reader is not None:
        left = reader.depth()
        reader.close()
    sim_proc.send_signal(signal.SIGTERM)
    sim_proc.wait(60)
    lines = [json.loads(x) for x in truth.read_text().splitlines() if x]
    want, have, lost, dup, unexpected = _check_truth(lines, db)
    return (
        f"{sum(want.values()):,} delivered (acked), {sum(have.values()):,} stored"
        f" ({left:,} rows still in the spool after shutdown): {lost} lost,"
        f" {dup} duplicated, {unexpected} not in the truth"
    )


def soak(
    bench: Bench, minutes: float, agents: int = 1000, tracemalloc: float | None = None
) -> dict[str, str]:
    """1,000/s over `agents` agents for `minutes`, RSS every 30 s. With `tracemalloc`
    (seconds), the worker traces its allocations (AUDITOR_TRACEMALLOC, auditor/ingest/
    memtrace.py) and its growth reports are printed at the end."""
    db = bench.fresh_db()
    truth = bench.work / "truth-soak.ndjson"
    sim = bench.simulator(agents, 1000, truth, timeout_ms=30_000)
    sim_proc = bench.procs[-1]
    env = None if tracemalloc is None else {"AUDITOR_TRACEMALLOC": str(tracemalloc)}
    worker = bench.worker(bench.config("soak", sim, agents), db, extra_env=env)
    _wait_subscribed(db, agents, timeout=900)
    _control(sim, "resume")
    started = time.monotonic()
    samples: list[tuple[float, float]] = []
    own: list[float] = []  # the worker process alone, without its drain process
    while time.monotonic() - started < minutes * 60:
        time.sleep(30)
        samples.append(((time.monotonic() - started) / 60, _rss_mb(worker.pid)))
        own.append(_rss_mb(worker.pid, children=False))
        print(
            f"soak {samples[-1][0]:.1f} min: RSS {samples[-1][1]:.0f} MB"
            f" (worker {own[-1]:.0f} MB, drain process {samples[-1][1] - own[-1]:.0f} MB)",
            file=sys.stderr,
        )
    _control(sim, "pause")
    stored = _notifications(db)
    lost = _settle(bench, sim_proc, db, worker, truth, bench.work / "soak.spool")
    if tracemalloc is not None:
        for line in (bench.work / "soak.log").read_text().splitlines():
            if "tracemalloc" in line:
                report = json.loads(line)
                print(
                    f"{report['at']} {report.get('traced')}: traced {report['traced_kib']} KiB",
                    file=sys.stderr,
                )
                for site in report.get("top", []):
                    print(f"  {site}", file=sys.stderr)
    after5 = [rss for at, rss in samples if at >= 5] or [samples[-1][1]]
    growth = (after5[-1] - after5[0]) / after5[0] * 100
    trace = ", ".join(f"{rss:.0f}" for _, rss in samples[1::2])
    own5 = [rss for (at, _), rss in zip(samples, own, strict=True) if at >= 5] or [own[-1]]
    return {
        f"soak 1,000/s over {agents:,} agents, {minutes:.0f} min": f"{stored:,} stored; {lost}",
        "soak RSS (MB, every minute)": trace,
        "soak RSS growth after minute 5": f"{after5[0]:.0f} -> {after5[-1]:.0f} MB"
        f" ({growth:+.1f}%; the worker alone {own5[0]:.0f} -> {own5[-1]:.0f} MB)",
    }


def backlog(bench: Bench, rows: int) -> dict[str, str]:
    db = bench.fresh_db()
    sim = bench.simulator(1, 0)
    config = bench.config("backlog", sim, 1, batch_size=5000)
    sample = (
        '{"channel":"/v2/me/openmedia","data":{"messageType":"OpenmediaStateChangeMessage",'
        '"notificationType":"StatusChange","referenceId":%d,"openmedia":{"id":"BACKLOG%09d",'
        '"state":"Processing","mediaType":"workitem","userData":{"k":"v"}}}}'
    )
    spool = Spool(bench.work / "backlog.spool", "NORMAL")
    now = datetime.now(UTC).isoformat(timespec="microseconds")
    for start in range(0, rows, 50_000):
        spool.put_many(
            [
                Row(
                    str(new_receipt_id()),
                    now,
                    "agent001",
                    "/v2/me/openmedia",
                    "notification",
                    sample % (i, i % 1000),
                )
                for i in range(start, min(rows, start + 50_000))
            ]
        )
    spool.close()
    worker = bench.worker(config, db)
    started = time.monotonic()
    rss = 0.0
    while _scalar(db, "SELECT count(*) FROM events") < rows:
        rss = max(rss, _rss_mb(worker.pid))
        time.sleep(0.5)
        if time.monotonic() - started > 900:
            break
    took = time.monotonic() - started
    done = _scalar(db, "SELECT count(*) FROM events")
    worker.send_signal(signal.SIGTERM)
    worker.wait(120)
    return {
        f"worker RSS draining a {rows:,}-row spool": f"{rss:.0f} MB peak",
        "backlog drain rate": f"{done:,} rows in {took:.0f} s = {done / took:,.0f}/s",
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=int, default=12000)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--idle-seconds", type=float, default=60)
    parser.add_argument("--drop-sessions", type=int, default=5000)
    parser.add_argument("--notify-agents", default="100,10000")
    parser.add_argument("--notify-seconds", type=float, default=60)
    parser.add_argument("--notify-rate", type=int, default=1000)
    parser.add_argument(
        "--baseline",
        help="git revision: the notify phase alternates its worker with this tree's"
        " (--rounds times)",
    )
    parser.add_argument(
        "--candidate", help="git revision compared with --baseline (default: this tree)"
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="name:gws.key=value,worker.key=value (repeatable): the notify phase alternates"
        " the worker with each variant's settings, --rounds times (with --baseline: each"
        " variant on both revisions)",
    )
    parser.add_argument(
        "--sim-nice",
        type=int,
        help="the simulator's niceness (e.g. -5, needs root): keeps it from starving on a"
        " shared machine",
    )
    parser.add_argument(
        "--profile", type=Path, help="directory: py-spy profiles of the notify phase (slower)"
    )
    parser.add_argument(
        "--worker-nice",
        type=int,
        help="the notify phase's worker's niceness (e.g. -5, needs root)",
    )
    parser.add_argument(
        "--cprofile",
        type=Path,
        help="directory: the notify phase's worker runs under cProfile (AUDITOR_CPROFILE);"
        " prints µs per /meta/connect of the costliest functions",
    )
    parser.add_argument("--soak-minutes", type=float, default=30)
    parser.add_argument(
        "--tracemalloc",
        type=float,
        help="seconds: the soak's worker traces allocations and reports growth this often",
    )
    parser.add_argument("--backlog", type=int, default=1_000_000)
    parser.add_argument("--only", default="throughput,latency,sessions,drop,notify,backlog")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="auditor-e2e-"))
    # SIGTERM ends the benchmark like Ctrl-C: through the finally below, which kills the
    # simulator and workers and stops PostgreSQL.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    bench = Bench(work)
    bench.sim_nice = args.sim_nice
    bench.worker_nice = args.worker_nice
    variants = [_variant(v) for v in args.variant]
    results: dict[str, str] = {}
    try:
        only = args.only.split(",")
        if "throughput" in only:
            results |= throughput(bench, args.rate, args.seconds)
        if "latency" in only:
            results |= latency(bench, args.seconds)
        if "sessions" in only:
            results |= many_sessions(bench, args.sessions, args.idle_seconds, args.profile)
        if "drop" in only:
            results |= mass_drop(bench, args.drop_sessions)
        if "notify" in only:
            for agents in args.notify_agents.split(","):
                if variants:
                    # With --baseline too: each variant's settings on both revisions.
                    revisions: list[tuple[Path | None, str]] = [(None, "")]
                    if args.baseline is not None:
                        revisions = [
                            (checkout(work, args.baseline), f"{args.baseline}, "),
                            (
                                None if args.candidate is None else checkout(work, args.candidate),
                                f"{args.candidate or 'this tree'}, ",
                            ),
                        ]
                    for round_ in range(1, args.rounds + 1):
                        for name, gws, settings in variants:
                            for src, revision in revisions:
                                results |= notify_cost(
                                    bench,
                                    int(agents),
                                    args.notify_seconds,
                                    src=src,
                                    label=f" ({revision}{name}, round {round_})",
                                    rate=args.notify_rate,
                                    gws=gws,
                                    settings=settings,
                                    cprofile=args.cprofile,
                                )
                    continue
                if args.baseline is None:
                    results |= notify_cost(
                        bench,
                        int(agents),
                        args.notify_seconds,
                        args.profile,
                        rate=args.notify_rate,
                        cprofile=args.cprofile,
                    )
                    continue
                base = checkout(work, args.baseline)
                new = None if args.candidate is None else checkout(work, args.candidate)
                for round_ in range(1, args.rounds + 1):
                    for src, name in ((base, args.baseline), (new, args.candidate or "this tree")):
                        results |= notify_cost(
                            bench,
                            int(agents),
                            args.notify_seconds,
                            src=src,
                            label=f" ({name}, round {round_})",
                            rate=args.notify_rate,
                        )
        if "soak" in only:
            results |= soak(bench, args.soak_minutes, tracemalloc=args.tracemalloc)
        if "backlog" in only:
            results |= backlog(bench, args.backlog)
    finally:
        # A second Ctrl-C or SIGTERM must not cut the clean-up short (orphaned PostgreSQL).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        bench.close()
        shutil.rmtree(work, ignore_errors=True)
    width = max(len(k) for k in results)
    print(f"| {'measure':<{width}} | value |\n|{'-' * (width + 2)}|---|")
    for key, value in results.items():
        print(f"| {key:<{width}} | {value} |")


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: simulator, workers and PostgreSQL stopped", file=sys.stderr)
        sys.exit(130)
