"""Fixed-slot ring buffer of preallocated frames between two threads (one producer, one consumer).

Policies: ``latest`` never blocks the producer: when every slot is full it overwrites the oldest
unread frame and counts a drop, so latency stays bounded (live). ``block`` makes the producer wait
for a free slot, so nothing is ever lost (render, recording). No torch here.
"""

import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, Optional

import numpy as np

Policy = Literal["latest", "block"]
POLICIES: tuple[str, ...] = ("latest", "block")


@dataclass(eq=False)
class Frame:
    """The one frame type: RGB uint8 pixels plus where the frame sits in its stream.

    Slots are allocated once by a ``FrameRing`` and written in place; never keep a reference to a
    frame after releasing it back to its ring.
    """

    rgb_hwc_u8: np.ndarray
    index: int = -1                 # position in the source stream (0-based)
    time_s: float = 0.0             # presentation time in seconds on the source's clock
    pts: int = -1                   # presentation timestamp in the source's time base (-1: none)
    captured_at: float = 0.0        # time.perf_counter() when the frame entered the pipeline
    alpha: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))  # α per site used

    def copy_meta_from(self, other: "Frame") -> None:
        self.index, self.time_s, self.pts, self.captured_at = other.index, other.time_s, other.pts, other.captured_at


class FrameRing:
    def __init__(self, slots: int, shape_hwc: tuple[int, int, int], policy: Policy, n_alpha: int = 0):
        if policy not in POLICIES:
            raise ValueError(f"ring policy must be one of {POLICIES}, not {policy!r}")
        if slots < 2:
            raise ValueError("a ring needs at least 2 slots")
        self.policy: Policy = policy
        self.shape_hwc = tuple(shape_hwc)
        self._free: deque[Frame] = deque(
            Frame(np.zeros(shape_hwc, np.uint8), alpha=np.zeros(n_alpha, np.float32)) for _ in range(slots))
        self._ready: deque[Frame] = deque()
        self._cond = threading.Condition()
        self.closed = False
        self.produced = 0   # frames committed by the producer
        self.consumed = 0   # frames released by the consumer
        self.dropped = 0    # frames overwritten unread (policy "latest")

    def acquire_write(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """A slot to fill, or None once the ring is closed (or on timeout)."""
        with self._cond:
            while True:
                if self.closed:
                    return None
                if self._free:
                    return self._free.popleft()
                if self.policy == "latest" and self._ready:
                    self.dropped += 1
                    return self._ready.popleft()
                if not self._cond.wait(timeout):
                    return None

    def commit(self, frame: Frame) -> None:
        with self._cond:
            self._ready.append(frame)
            self.produced += 1
            self._cond.notify_all()

    def cancel_write(self, frame: Frame) -> None:
        """Give back a slot the producer acquired but could not fill."""
        with self._cond:
            self._free.append(frame)
            self._cond.notify_all()

    def acquire_read(self, timeout: Optional[float] = None) -> Optional[Frame]:
        """The oldest unread frame; None on timeout or when the ring is closed and drained."""
        with self._cond:
            while not self._ready:
                if self.closed or not self._cond.wait(timeout):
                    return None
            return self._ready.popleft()

    def release(self, frame: Frame) -> None:
        with self._cond:
            self._free.append(frame)
            self.consumed += 1
            self._cond.notify_all()

    def close(self) -> None:
        """End of stream (from the producer) or shutdown (from the consumer): the producer's next
        acquire returns None; the consumer still drains what is ready."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    @property
    def drained(self) -> bool:
        with self._cond:
            return self.closed and not self._ready

    def counters(self) -> dict:
        with self._cond:
            return {"produced": self.produced, "consumed": self.consumed, "dropped": self.dropped,
                    "queued": len(self._ready)}
