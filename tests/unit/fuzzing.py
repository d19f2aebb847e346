"""What every fuzz test here shares: its hypothesis settings and JSON-like values."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def json_values(max_size: int = 4, max_leaves: int = 12) -> st.SearchStrategy:
    """Anything a JSON reply can hold, nested."""
    return st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(),
        lambda inner: st.lists(inner, max_size=max_size) | st.dictionaries(
            st.text(max_size=8), inner, max_size=max_size),
        max_leaves=max_leaves)
