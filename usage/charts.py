"""Usage reports and their charts: server-rendered SVG, no JavaScript, no CDN."""

from dataclasses import dataclass, field
from datetime import datetime
from html import escape

from django.utils.safestring import SafeString, mark_safe

from usage.queries import Range, fetch, series_sql

PALETTE = ["#2350c8", "#d55e00", "#009e73", "#cc3d8f", "#6a51a3", "#8c6d31", "#00838f"]
OTHER = "other endpoints"
MAX_SERIES = len(PALETTE) - 1  # the rest is grouped as OTHER
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 52, 8, 10, 26


def compact(number: int) -> str:
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if number >= limit:
            return f"{number / limit:.1f}".removesuffix(".0") + suffix
    return str(number)


def nice_ceiling(value: int) -> int:
    """The smallest of 1, 2, 2.5, 5 x 10^n at least `value` (and at least 4, for 4 ticks)."""
    magnitude = 1
    while True:
        for factor in (1, 2, 2.5, 5):
            if factor * magnitude >= max(value, 4):
                return int(factor * magnitude)
        magnitude *= 10


@dataclass
class Segment:
    y: float
    height: float
    color: str
    title: str


@dataclass
class Bar:
    x: float
    width: float
    segments: list[Segment]


@dataclass
class Chart:  # coordinates are rounded to 0.1 px here: templates print them as they are
    title: str
    unit: str
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str]]
    legend: list[tuple[str, str]]
    total: int
    width: int = WIDTH
    height: int = HEIGHT

    def svg(self) -> SafeString:
        """The chart as inline SVG: gridlines with values, stacked bars with their values on hover, labels.

        Built here rather than in a template loop: a year's chart has hundreds of
        bars, and string formatting is a hundred times cheaper than template nodes.
        """
        parts = [
            # Its natural size where no stylesheet sizes it (the admin); app.css makes it fluid.
            f'<svg viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" role="img" '
            f'aria-label="{escape(self.title)} per period, stacked by endpoint; exact values in the table below">'
        ]
        for y, label in self.y_ticks:
            parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y}" y2="{y}"/>')
            parts.append(f'<text class="axis" x="{LEFT - 6}" y="{y}" text-anchor="end" dominant-baseline="middle">{label}</text>')
        for bar in self.bars:
            for segment in bar.segments:
                parts.append(
                    f'<rect x="{bar.x}" y="{segment.y}" width="{bar.width}" height="{segment.height}" '
                    f'fill="{segment.color}"><title>{escape(segment.title)}</title></rect>'
                )
        for x, label in self.x_labels:
            parts.append(f'<text class="axis" x="{x}" y="{HEIGHT - 8}" text-anchor="middle">{escape(label)}</text>')
        parts.append("</svg>")
        return mark_safe("".join(parts))


def stacked_bars(title: str, unit: str, labels: list[str], series: dict[str, list[int]], colors: dict[str, str]) -> Chart:
    totals = [sum(values) for values in zip(*series.values())] or [0] * len(labels)
    top = nice_ceiling(max(totals, default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        y, segments = HEIGHT - BOTTOM, []
        for name, values in series.items():
            if values[i]:
                height = values[i] / top * plot_height
                y -= height
                segments.append(Segment(round(y, 1), round(height, 1), colors[name], f"{label} · {name}: {values[i]:,} {unit}"))
        bars.append(Bar(round(LEFT + i * slot + slot * 0.15, 1), round(slot * 0.7, 1), segments))
    every = max(1, round(len(labels) / 8))
    return Chart(
        title=title,
        unit=unit,
        bars=bars,
        y_ticks=[(round(HEIGHT - BOTTOM - plot_height * k / 4, 1), compact(top * k // 4)) for k in range(5)],
        x_labels=[(round(LEFT + i * slot + slot / 2, 1), label) for i, label in enumerate(labels) if i % every == 0],
        legend=[(colors[name], name) for name in series],
        total=sum(totals),
    )


@dataclass
class UsageReport:
    """One account's (or everyone's) calls, words and characters per bucket and endpoint over a range."""

    range: Range
    now: datetime
    account: int | None = None
    rows: list[dict] = field(init=False)

    def __post_init__(self):
        self.buckets = self.range.buckets(self.now)
        params = {"start": self.buckets[0], "end": self.range.bucket_end(self.buckets[-1]), "account": self.account}
        self.rows = fetch(series_sql(self.range, per_account=self.account is not None), params)

    @property
    def labels(self) -> list[str]:
        return [bucket.strftime(self.range.bucket_label) for bucket in self.buckets]

    def endpoints(self) -> list[str]:
        """Endpoints by calls, busiest first; beyond the palette they are grouped."""
        calls = {}
        for row in self.rows:
            calls[row["endpoint"]] = calls.get(row["endpoint"], 0) + row["requests"]
        names = sorted(calls, key=lambda name: (-calls[name], name))
        return names[:MAX_SERIES] + ([OTHER] if len(names) > MAX_SERIES else [])

    def series(self, measure: str) -> dict[str, list[int]]:
        endpoints = self.endpoints()
        position = {bucket: i for i, bucket in enumerate(self.buckets)}
        series = {name: [0] * len(self.buckets) for name in endpoints}
        for row in self.rows:
            name = row["endpoint"] if row["endpoint"] in series else OTHER
            series[name][position[row["t"]]] += row[measure]
        return series

    def charts(self) -> list[Chart]:
        colors = dict(zip(self.endpoints(), PALETTE))
        return [
            stacked_bars("Requests", "calls", self.labels, self.series("requests"), colors),
            stacked_bars("Words generated", "words", self.labels, self.series("words"), colors),
            stacked_bars("Characters processed", "characters", self.labels, self.series("characters"), colors),
        ]

    def table(self) -> list[dict]:
        """Totals per bucket, newest first."""
        totals = {bucket: dict(requests=0, errors=0, words=0, characters=0) for bucket in self.buckets}
        for row in self.rows:
            for measure in ("requests", "errors", "words", "characters"):
                totals[row["t"]][measure] += row[measure]
        return [
            {"bucket": bucket, "label": label, **totals[bucket]}
            for bucket, label in reversed(list(zip(self.buckets, self.labels)))
        ]
