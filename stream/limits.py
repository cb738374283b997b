"""Bounds on the numbers users give (flags and config files), in one place: a value past them is
refused with one sentence before any work, instead of allocating gigabytes or spawning thousands
of threads. Generous for real use (8K frames, hundreds of threads)."""

MAX_SIDE = 8192          # pixels: processing, output, camera and window sizes
MAX_SCALE = 8.0          # --scale of the source size
MAX_FPS = 1000.0
MAX_BATCH = 256          # frames per inference call (render)
MAX_RING_SLOTS = 64
MAX_THREADS = 256
MAX_CAMERA_INDEX = 255
MAX_SEED = 2 ** 63 - 1
MAX_STABILIZE = 0.95     # --stabilize strength (1 would freeze the picture)
DEFAULT_STABILIZE = 0.6  # --stabilize given without a strength
