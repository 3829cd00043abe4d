"""The usage charts' axes: round steps for the values, labels that keep their size."""

import math
import re

import pytest

from usage.charts import HEIGHT, stacked_bars, y_axis


@pytest.mark.parametrize(
    "maximum, ticks",
    [
        (0, [0, 1]),
        (1, [0, 1]),
        (7, [0, 2, 4, 6, 8]),
        (21, [0, 10, 20, 30]),
        (187, [0, 50, 100, 150, 200]),  # was 62, 125, 187, 250
        (250, [0, 100, 200, 300]),
        (18_800, [0, 5_000, 10_000, 15_000, 20_000]),  # was 6.2k, 12.5k, 18.8k
        (1_000_000, [0, 500_000, 1_000_000]),
    ],
)
def test_y_ticks_are_round_steps_from_zero_past_the_maximum(maximum, ticks):
    assert y_axis(maximum) == ticks


@pytest.mark.parametrize("maximum", [*range(0, 120), 999, 1_001, 4_321, 55_555, 123_456_789])
def test_every_step_is_one_two_or_five_times_a_power_of_ten(maximum):
    ticks = y_axis(maximum)
    step = ticks[1]
    assert step / 10 ** math.floor(math.log10(step)) in (1, 2, 5)
    assert ticks == list(range(0, ticks[-1] + 1, step))
    assert ticks[-2] < max(maximum, 1) <= ticks[-1] and len(ticks) <= 5


def test_the_chart_draws_the_ticks_and_keeps_its_labels_unscaled():
    chart = stacked_bars("Requests", "calls", ["a", "b"], {"/v1/x": [62, 150]}, {"/v1/x": "#000"})
    assert [label for _, label in chart.y_ticks] == ["0", "50", "100", "150"]
    assert chart.bars[1].segments[0].y == 10.0  # the highest bar reaches the top tick
    svg = str(chart.svg())
    assert "viewBox" not in svg  # a viewBox would shrink the labels with the chart
    assert re.findall(r'<rect x="([\d.]+)%"', svg) == ["7.5", "57.5"] and f'height="{HEIGHT}"' in svg
    assert chart.rows == [("a", [62], 62), ("b", [150], 150)]  # the text alternative's table
