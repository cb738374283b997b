import threading

import numpy as np
import pytest

from dynastream.stream.ring import FrameRing

N = 10_000


def _produce(ring: FrameRing, n: int) -> None:
    for i in range(n):
        frame = ring.acquire_write()
        if frame is None:
            return
        frame.index = i
        frame.rgb_hwc_u8[0, 0, 0] = i % 256
        ring.commit(frame)
    ring.close()


def test_block_policy_loses_nothing_and_keeps_order():
    ring = FrameRing(4, (2, 2, 3), "block")
    producer = threading.Thread(target=_produce, args=(ring, N))
    producer.start()
    seen = []
    while (frame := ring.acquire_read(timeout=5)) is not None:
        assert frame.rgb_hwc_u8[0, 0, 0] == frame.index % 256
        seen.append(frame.index)
        ring.release(frame)
    producer.join()
    assert seen == list(range(N))
    assert ring.counters() == {"produced": N, "consumed": N, "dropped": 0, "queued": 0}


def test_latest_policy_never_blocks_producer_and_counts_drops():
    ring = FrameRing(3, (2, 2, 3), "latest")
    consumer_go = threading.Event()
    seen = []

    def consume():
        consumer_go.wait()
        while (frame := ring.acquire_read(timeout=5)) is not None:
            seen.append(frame.index)
            if len(seen) % 50 == 0:
                threading.Event().wait(0.001)  # a slow consumer
            ring.release(frame)

    consumer = threading.Thread(target=consume)
    consumer.start()
    # The producer runs its first half with nobody consuming: it must never block.
    for i in range(N // 2):
        frame = ring.acquire_write(timeout=1.0)
        assert frame is not None, "latest policy blocked the producer"
        frame.index = i
        ring.commit(frame)
    consumer_go.set()
    for i in range(N // 2, N):
        frame = ring.acquire_write(timeout=1.0)
        assert frame is not None
        frame.index = i
        ring.commit(frame)
    ring.close()
    consumer.join()
    c = ring.counters()
    assert c["produced"] == N and c["dropped"] > 0
    assert c["dropped"] == c["produced"] - c["consumed"]
    assert seen == sorted(seen) and len(seen) == c["consumed"]
    assert seen[-1] == N - 1, "the newest frame is never dropped"


def test_consumer_close_stops_a_blocked_producer():
    ring = FrameRing(2, (1, 1, 3), "block")
    results = []
    t = threading.Thread(target=lambda: results.append([ring.acquire_write() for _ in range(3)]))
    t.start()
    t.join(0.2)
    assert t.is_alive(), "third acquire must block on a full block ring"
    ring.close()
    t.join(2)
    assert not t.is_alive() and results[0][2] is None


def test_bad_arguments():
    with pytest.raises(ValueError):
        FrameRing(4, (1, 1, 3), "newest")
    with pytest.raises(ValueError):
        FrameRing(1, (1, 1, 3), "block")


def test_slots_are_preallocated_and_reused():
    ring = FrameRing(2, (4, 4, 3), "latest", n_alpha=3)
    ids = set()
    for _ in range(10):
        f = ring.acquire_write()
        ids.add(id(f.rgb_hwc_u8))
        assert f.alpha.shape == (3,) and f.rgb_hwc_u8.dtype == np.uint8
        ring.commit(f)
    assert len(ids) == 2
