"""Order book integrity: the checks a book must pass before anything may trade on it."""

from __future__ import annotations

import numpy as np

#: Reasons a book is not tradable.
EMPTY_SIDE = "empty_side"
BAD_LEVEL = "non_positive_or_nan_level"
CROSSED = "crossed"
UNSORTED = "unsorted_levels"


def check_levels(bids: np.ndarray, asks: np.ndarray) -> str:
    """Why a top-N book (levels as (n, 2) price/qty arrays, best first) is broken, or ''."""
    if len(bids) == 0 or len(asks) == 0:
        return EMPTY_SIDE
    for side in (bids, asks):
        if not np.all(np.isfinite(side)) or np.any(side <= 0.0):
            return BAD_LEVEL
    if np.any(np.diff(bids[:, 0]) >= 0) or np.any(np.diff(asks[:, 0]) <= 0):
        return UNSORTED
    if bids[0, 0] >= asks[0, 0]:
        return CROSSED
    return ""
