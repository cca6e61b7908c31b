"""Small PromQL-equivalent helpers for reading a ``/metrics`` page without a Prometheus server."""

from __future__ import annotations

import math


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus's ``histogram_quantile``: ``buckets`` are ``(le, cumulative count)`` pairs, ``+Inf`` included.

    Linear interpolation inside the bucket that holds the rank; a rank in the ``+Inf`` bucket gives the upper bound
    of the last finite bucket. ``None`` when there are no observations.
    """
    if not buckets:
        return None
    buckets = sorted(buckets)
    count = buckets[-1][1]
    if count <= 0:
        return None
    rank = q * count
    lower_bound, lower_count = 0.0, 0.0
    for upper_bound, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper_bound):
                return lower_bound
            if cumulative == lower_count:
                return upper_bound
            return lower_bound + (upper_bound - lower_bound) * (rank - lower_count) / (cumulative - lower_count)
        lower_bound, lower_count = upper_bound, cumulative
    return lower_bound
