"""Statistics of step times: median throughput, step-time variation and run stability."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

# The measurement is cut into this many consecutive windows; the spread of their medians is
# how much the run's figure would move had it measured only a part of the time. A window
# has at least WINDOW_STEPS steps, so that one late step (launch jitter) does not move its
# median.
WINDOWS = 5
WINDOW_STEPS = 3


@dataclass(frozen=True)
class Summary:
    """Throughput of one run from every timed step."""

    steps: int
    median_s: float
    mean_s: float
    min_s: float
    max_s: float
    cv: float  # coefficient of variation of the step times (population stdev / mean)
    images_per_s: float  # images per step (all GPUs) / median step time
    spread: float = 0.0  # coefficient of variation of the medians of WINDOWS sub-windows


def window_spread(times: list[float], windows: int = WINDOWS) -> float:
    """CV of the medians of ``windows`` consecutive slices of ``times`` (0 when too few)."""
    n = min(windows, len(times) // WINDOW_STEPS)
    if n < 2:
        return 0.0
    bounds = [round(i * len(times) / n) for i in range(n + 1)]
    medians = [statistics.median(times[a:b]) for a, b in zip(bounds, bounds[1:])]
    return statistics.pstdev(medians) / statistics.fmean(medians)


def summarize(times_s: list[float], images_per_step: int) -> Summary:
    """Median images/s and the spread of ``times_s``; ValueError when there is nothing."""
    times = [float(t) for t in times_s]
    if not times:
        raise ValueError("no timed steps")
    if any(t <= 0 for t in times):
        raise ValueError(f"a step time is not positive: {min(times)}")
    median = statistics.median(times)
    mean = statistics.fmean(times)
    cv = statistics.pstdev(times) / mean if len(times) > 1 else 0.0
    return Summary(steps=len(times), median_s=median, mean_s=mean, min_s=min(times),
                   max_s=max(times), cv=cv, images_per_s=images_per_step / median,
                   spread=window_spread(times))
