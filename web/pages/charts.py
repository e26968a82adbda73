"""Chart geometry for inline SVG drawn on the server: coverage bars per account and stacked
volume bars. Templates draw what these compute; numbers only, no markup here."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

WIDTH = 800
LABEL_WIDTH = 150
RIGHT = 10
ROW = 30
BAR = 18
AXIS = 34
# Distinguishable, and each at least 3:1 against white (WCAG non-text contrast).
PALETTE = (
    "#0b5cad",
    "#b34700",
    "#2e7d32",
    "#6a1b9a",
    "#ad1457",
    "#00695c",
    "#5d4037",
    "#455a64",
)
CONNECTED = "#1b7a3a"
GAP = "#b3261e"


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    color: str
    label: str  # read by screen readers (<title>) and on hover


@dataclass(frozen=True)
class Tick:
    x: float
    label: str
    anchor: str = "middle"  # the outer labels keep inside the chart


@dataclass
class Chart:
    width: int
    height: int
    rects: list[Rect] = field(default_factory=list)
    ticks: list[Tick] = field(default_factory=list)
    rows: list[tuple[float, str]] = field(default_factory=list)  # (y of the text, label)
    legend: list[tuple[str, str]] = field(default_factory=list)  # (color, name)
    baseline: float = 0.0


class TimeScale:
    def __init__(self, start: datetime, end: datetime, left: float, right: float) -> None:
        self.start, self.end = start, end
        self.left, self.right = left, right
        self.span = max((end - start).total_seconds(), 1e-6)

    def x(self, at: datetime) -> float:
        clipped = min(max(at, self.start), self.end)
        share = (clipped - self.start).total_seconds() / self.span
        return round(self.left + share * (self.right - self.left), 2)

    def ticks(self, count: int = 5) -> list[Tick]:
        step = (self.end - self.start) / count
        fmt = "%H:%M" if self.end - self.start <= timedelta(days=1) else "%m-%d %H:%M"
        ticks = []
        for i in range(count + 1):
            at = self.start + step * i
            anchor = "start" if i == 0 else "end" if i == count else "middle"
            ticks.append(Tick(self.x(at), at.astimezone(UTC).strftime(fmt), anchor))
        return ticks


def _span_label(what: str, start: datetime, end: datetime) -> str:
    fmt = "%Y-%m-%d %H:%M:%S"
    return f"{what} {start.astimezone(UTC):{fmt}} to {end.astimezone(UTC):{fmt}} UTC"


def coverage_chart(
    start: datetime,
    end: datetime,
    accounts: Sequence[
        tuple[str, Iterable[tuple[datetime, datetime]], Iterable[tuple[datetime, datetime]]]
    ],
) -> Chart:
    """One row per account: connected spans in green, gaps in red (also named in text)."""
    scale = TimeScale(start, end, LABEL_WIDTH, WIDTH - RIGHT)
    chart = Chart(WIDTH, ROW * max(len(accounts), 1) + AXIS)
    for row, (account, connected, gaps) in enumerate(accounts):
        y = row * ROW + (ROW - BAR) / 2
        chart.rows.append((row * ROW + ROW / 2 + 5, account))
        for color, what, spans in ((CONNECTED, "connected", connected), (GAP, "gap", gaps)):
            for lo, hi in spans:
                x0, x1 = scale.x(lo), scale.x(hi)
                chart.rects.append(
                    Rect(
                        x0,
                        y,
                        max(x1 - x0, 1.0),
                        BAR,
                        color,
                        f"{account}: " + _span_label(what, lo, hi),
                    )
                )
    chart.baseline = ROW * max(len(accounts), 1)
    chart.ticks = scale.ticks()
    chart.legend = [(CONNECTED, "connected"), (GAP, "gap (nobody listened)")]
    return chart


def stacked_bars(
    buckets: Sequence[datetime],
    width_of_bucket: timedelta,
    end: datetime,
    counts: dict[datetime, dict[str, int]],
    height: int = 220,
) -> Chart:
    """Stacked bars, one per bucket, one color per series (most frequent series first)."""
    totals: dict[str, int] = {}
    for per in counts.values():
        for name, n in per.items():
            totals[name] = totals.get(name, 0) + n
    series = sorted(totals, key=lambda s: (-totals[s], s))
    colors = {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(series)}
    start = buckets[0] if buckets else end - width_of_bucket
    scale = TimeScale(start, end, LABEL_WIDTH, WIDTH - RIGHT)
    peak = max((sum(per.values()) for per in counts.values()), default=0)
    chart = Chart(WIDTH, height + AXIS)
    chart.baseline = height
    usable = height - 10
    for at in buckets:
        x0, x1 = scale.x(at), scale.x(at + width_of_bucket)
        top = float(height)
        for name in series:
            n = counts.get(at, {}).get(name, 0)
            if not n or not peak:
                continue
            h = usable * n / peak
            top -= h
            label = f"{name}: {n} events from {at.astimezone(UTC):%Y-%m-%d %H:%M} UTC"
            chart.rects.append(
                Rect(x0 + 1, round(top, 2), max(x1 - x0 - 2, 1.0), round(h, 2), colors[name], label)
            )
    chart.rows = [(float(height - usable + 4), f"{peak} events"), (float(height), "0")]
    chart.ticks = scale.ticks()
    chart.legend = [(colors[name], f"{name} ({totals[name]})") for name in series]
    return chart
