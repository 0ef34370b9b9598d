"""The benchmark's targets: the bound each figure that has one must meet."""

from __future__ import annotations

TARGETS = {
    "speedup_vs_seed_loop": (">=", 2.0),
    "tracking_overhead_pct": ("<=", 3.0),
    "sweep_speedup_2w": (">=", 1.2),
    "probe_pct_of_10_epoch_run": ("<=", 5.0),
}
"""A figure's key: (">=" or "<=", the bound it must meet)."""


def meets(key: str, value: float) -> bool:
    """Whether ``value`` of the figure ``key`` meets its target (KeyError: it has none)."""
    op, bound = TARGETS[key]
    return value >= bound if op == ">=" else value <= bound
