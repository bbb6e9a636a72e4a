"""The emulated clock: wall-clock time that runs ``time_scale`` times faster than real time."""

from __future__ import annotations

import time
from collections.abc import Callable


class EmulatedClock:
    """``now() = t0 + real_elapsed * time_scale``, in epoch seconds.

    ``t0`` is the wall-clock time at creation, or ``start`` (an emulated time to resume from).

    Changing the scale or advancing the clock never makes it jump backwards: both re-anchor it at
    the current emulated time.
    """

    def __init__(
        self,
        time_scale: float = 1.0,
        *,
        start: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._monotonic = monotonic
        self._scale = time_scale
        self._real0 = monotonic()
        self._emulated0 = wall() if start is None else start

    @property
    def time_scale(self) -> float:
        """Emulated seconds per real second."""
        return self._scale

    def now(self) -> float:
        """The emulated time, in seconds since the epoch."""
        return self._emulated0 + (self._monotonic() - self._real0) * self._scale

    def set_time_scale(self, time_scale: float) -> None:
        """Run at a new speed from now on."""
        self._emulated0 = self.now()
        self._real0 = self._monotonic()
        self._scale = time_scale

    def advance(self, seconds: float) -> None:
        """Jump ``seconds`` emulated seconds ahead (negative values are ignored)."""
        self._emulated0 += max(seconds, 0.0)
