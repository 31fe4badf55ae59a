"""The Python heap of a long-lived actor process."""

from __future__ import annotations

import gc


def freeze() -> None:
    """Move everything alive now (Ray, numba, the books: it lives for the run) out of the
    cyclic collector's reach. A full collection then walks only what the run allocates since,
    instead of stalling the event loop for tens of milliseconds (measured: a trading node at
    25,000 updates/s skipped 0.3 % of its ticks before, none after)."""
    gc.collect()
    gc.freeze()
