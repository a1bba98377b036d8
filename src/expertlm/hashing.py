"""The one 64-bit mixing function: splitmix64's finaliser, vectorised in numpy.

Used wherever numbers must become well-spread hashes: LSH band keys (`corpus/dedup.py`), hashed
n-gram features (`features.py`) and the owner of a block of documents (`corpus/shard.py`).
"""

from __future__ import annotations

import numpy as np

GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # splitmix64's increment (the golden ratio)
M1, M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)


def mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser of a uint64 array, in place (and returned): every input bit
    reaches every output bit."""
    x ^= x >> np.uint64(30)
    x *= M1
    x ^= x >> np.uint64(27)
    x *= M2
    x ^= x >> np.uint64(31)
    return x
