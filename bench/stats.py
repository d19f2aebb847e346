"""Medians, spread and ratios, the same way for every number in the report."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any


def summary(values: Sequence[float]) -> dict[str, Any]:
    """median, min, max, n and the relative spread (max - min) / median."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"n": 0, "median": None, "min": None, "max": None, "spread": None}
    med = statistics.median(vals)
    return {"n": len(vals), "median": med, "min": min(vals), "max": max(vals),
            "spread": (max(vals) - min(vals)) / med if med else 0.0, "values": vals}


def ratio(a: dict[str, Any] | float | None, b: dict[str, Any] | float | None) -> float | None:
    """a / b of two summaries' medians (or plain numbers)."""
    av = a.get("median") if isinstance(a, dict) else a
    bv = b.get("median") if isinstance(b, dict) else b
    if av is None or not bv:
        return None
    return float(av) / float(bv)


def fmt(value: float | None, unit: str = "", digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 100 or float(value).is_integer():
        text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.0f}"
    else:
        text = f"{value:.{digits}f}"
    return f"{text}{unit}"


def fmt_summary(s: dict[str, Any], unit: str = "", digits: int = 2) -> str:
    """``median (min–max)``"""
    if not s or s.get("median") is None:
        return "n/a"
    if s["n"] == 1 or s["min"] == s["max"]:
        return fmt(s["median"], unit, digits)
    low, high = fmt(s["min"], "", digits), fmt(s["max"], unit, digits)
    return f"{fmt(s['median'], unit, digits)} ({low}–{high})"


def fmt_ratio(r: float | None) -> str:
    return "n/a" if r is None else f"{r:.2f}×"
