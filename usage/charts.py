"""Usage reports and their charts: server-rendered SVG, no JavaScript, no CDN."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from html import escape
from itertools import count

from django.utils.safestring import SafeString, mark_safe

from billing.models import Plan, billing_period
from usage.queries import Range, quota_use, series

PALETTE = ["#2350c8", "#d55e00", "#009e73", "#cc3d8f", "#6a51a3", "#8c6d31", "#00838f"]
OTHER = "other endpoints"
MAX_SERIES = len(PALETTE) - 1  # the rest is grouped as OTHER
# Pixels. The width is the natural size where no stylesheet sizes the chart (the admin): app.css makes it fluid.
WIDTH, HEIGHT = 676, 220
TOP, BOTTOM = 10, 26
MAX_X_LABELS = 8  # on narrow screens app.css hides every other one


def compact(number: int) -> str:
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if number >= limit:
            return f"{number / limit:.1f}".removesuffix(".0") + suffix
    return str(number)


def y_axis(maximum: int, intervals: int = 4) -> list[int]:
    """Ticks from 0 up to the first at or past `maximum`, at most `intervals` apart, a round step (1, 2 or 5 x 10^n) each."""
    steps = (factor * 10**power for power in count() for factor in (1, 2, 5))
    step = next(step for step in steps if step * intervals >= maximum)
    top = -(-max(maximum, 1) // step) * step  # ceiling
    return list(range(0, top + 1, step))


@dataclass
class Segment:
    y: float
    height: float
    color: str
    title: str


@dataclass
class Bar:
    x: float  # percent of the plot's width
    width: float  # percent
    segments: list[Segment]


@dataclass
class Chart:  # coordinates are rounded here: templates print them as they are
    title: str
    unit: str
    bars: list[Bar]
    y_ticks: list[tuple[float, str]]
    x_labels: list[tuple[float, str, bool]]  # (percent, label, shown on narrow screens too)
    legend: list[tuple[str, str]]
    rows: list[tuple[str, list[int], int]]  # the values drawn: (period, per series, total)
    total: int

    def svg(self) -> SafeString:
        """The chart as inline SVG: gridlines with their values, stacked bars with their values on hover, labels.

        Nothing is scaled to fit: x is in percent of the plot's width and y in
        pixels, so labels keep their size at every width. The values stand left
        of the plot, outside it (overflow="visible"; the page leaves them room).
        Built here rather than in a template loop: a chart has up to hundreds of
        bars, and string formatting is a hundred times cheaper than template nodes.
        """
        parts = [
            f'<svg class="plot" width="{WIDTH}" height="{HEIGHT}" overflow="visible" font-size="12" role="img" '
            f'aria-label="{escape(self.title)} per period, stacked by endpoint; the values are in the table after the chart">'
        ]
        for y, label in self.y_ticks:
            parts.append(f'<line x1="0" x2="100%" y1="{y}" y2="{y}" stroke="#d9dee5"/>')
            parts.append(
                f'<text class="axis" x="-6" y="{y}" text-anchor="end" dominant-baseline="middle">{label}</text>'
            )
        for bar in self.bars:
            for segment in bar.segments:
                parts.append(
                    f'<rect x="{bar.x}%" y="{segment.y}" width="{bar.width}%" height="{segment.height}" '
                    f'fill="{segment.color}"><title>{escape(segment.title)}</title></rect>'
                )
        for x, label, on_narrow in self.x_labels:
            narrow = "" if on_narrow else " wide-only"
            parts.append(
                f'<text class="axis{narrow}" x="{x}%" y="{HEIGHT - 8}" text-anchor="middle">{escape(label)}</text>'
            )
        parts.append("</svg>")
        return mark_safe("".join(parts))


def stacked_bars(
    title: str, unit: str, labels: list[str], series: dict[str, list[int]], colors: dict[str, str]
) -> Chart:
    totals = [sum(values) for values in zip(*series.values())] or [0] * len(labels)
    ticks = y_axis(max(totals, default=0))
    plot_height = HEIGHT - TOP - BOTTOM
    slot = 100 / max(len(labels), 1)
    bars = []
    for i, label in enumerate(labels):
        y, segments = HEIGHT - BOTTOM, []
        for name, values in series.items():
            if values[i]:
                height = values[i] / ticks[-1] * plot_height
                y -= height
                segments.append(
                    Segment(round(y, 1), round(height, 1), colors[name], f"{label} · {name}: {values[i]:,} {unit}")
                )
        bars.append(Bar(round(i * slot + slot * 0.15, 2), round(slot * 0.7, 2), segments))
    every = -(-len(labels) // MAX_X_LABELS)  # ceiling
    return Chart(
        title=title,
        unit=unit,
        bars=bars,
        y_ticks=[(round(HEIGHT - BOTTOM - plot_height * tick / ticks[-1], 1), compact(tick)) for tick in ticks],
        x_labels=[
            (round(i * slot + slot / 2, 2), label, i % (2 * every) == 0)
            for i, label in enumerate(labels)
            if i % every == 0
        ],
        legend=[(colors[name], name) for name in series],
        rows=[(label, [values[i] for values in series.values()], totals[i]) for i, label in enumerate(labels)],
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
        self.rows = series(self.range, self.buckets[0], self.range.bucket_end(self.buckets[-1]), self.account).rows()

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


def quotas(organization, now: datetime) -> list[dict]:
    """Calls allowed so far against the plan's quotas (those it sets)."""
    plan = Plan.objects.of(organization)
    period_start, period_end = billing_period(organization, now)
    hour = now.replace(minute=0, second=0, microsecond=0)
    used = quota_use(organization.pk, period_start, hour - timedelta(hours=23), hour).rows()[0]
    limits = [
        ("This billing period", f"until {period_end:%d %b %Y}", used["period"], plan.per_month),
        ("Last 24 hours", "rolling", used["day"], plan.per_day),
        ("This hour", f"since {hour:%H:%M} UTC", used["hour"], plan.per_hour),
    ]
    return [
        {"label": label, "note": note, "used": count, "quota": quota, "percent": min(100, round(100 * count / quota))}
        for label, note, count, quota in limits
        if quota
    ]
