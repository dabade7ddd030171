"""Random co-located patches, streamed from the pair files.

Each batch is a pure function of ``(seed, step)``: the images and the patch corners are drawn
from a generator seeded with both, so a resumed run sees exactly the batches the killed run
would have seen, with no sampler state to save. Decoded images live in a cache bounded in bytes
(least recently used out), so memory does not grow with the data set; each step draws its
patches from a few images (``PATCHES_PER_IMAGE`` each) to keep decoding cheap when the data set
is larger than the cache. The next batch is decoded in a background thread while a step runs.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Mapping, Sequence

import numpy as np

from nhance_batch.finetune.pairs import ImagePair, read_pair

PATCHES_PER_IMAGE = 4
DEFAULT_CACHE_BYTES = 512 << 20


class ImageCache:
    """Decoded pairs by name, at most ``max_bytes`` of pixels (LRU)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES,
                 storage_options: Mapping[str, Any] | None = None) -> None:
        self.max_bytes = max_bytes
        self.storage_options = storage_options
        self._items: OrderedDict[str, tuple[np.ndarray, np.ndarray]] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.decoded = 0  # images pairs decoded so far (for tests and stats)

    @property
    def nbytes(self) -> int:
        return self._bytes

    def get(self, pair: ImagePair) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            item = self._items.get(pair.name)
            if item is not None:
                self._items.move_to_end(pair.name)
                return item
        item = read_pair(pair, self.storage_options)
        size = item[0].nbytes + item[1].nbytes
        with self._lock:
            self.decoded += 1
            if pair.name not in self._items:
                self._items[pair.name] = item
                self._bytes += size
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, (a, b) = self._items.popitem(last=False)
                self._bytes -= a.nbytes + b.nbytes
        return item


class PatchSampler:
    """``batch(step)`` -> (phone, target) float32 [B, P, P, 3] in [0, 1], plus ``swaps`` [B]
    (0/1: which of enhanced/target the discriminator is shown, as DPED draws them)."""

    def __init__(self, pairs: Sequence[ImagePair], *, patch: int, batch: int, seed: int,
                 cache: ImageCache | None = None) -> None:
        if not pairs:
            raise ValueError("no training pairs")
        self.pairs = list(pairs)
        self.patch, self.batch_size, self.seed = patch, batch, seed
        self.cache = cache or ImageCache()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="patches")
        self._ahead: tuple[int, Future] | None = None

    def _make(self, step: int):
        rng = np.random.default_rng([self.seed, step])
        n_images = -(-self.batch_size // PATCHES_PER_IMAGE)
        chosen = rng.integers(0, len(self.pairs), n_images)
        p = self.patch
        phone = np.empty((self.batch_size, p, p, 3), np.float32)
        target = np.empty_like(phone)
        for k in range(self.batch_size):
            pair = self.pairs[int(chosen[k // PATCHES_PER_IMAGE])]
            a, b = self.cache.get(pair)
            y = int(rng.integers(0, a.shape[0] - p + 1))
            x = int(rng.integers(0, a.shape[1] - p + 1))
            phone[k] = a[y:y + p, x:x + p] / np.float32(255)
            target[k] = b[y:y + p, x:x + p] / np.float32(255)
        swaps = rng.integers(0, 2, self.batch_size).astype(np.float32)
        return phone, target, swaps

    def batch(self, step: int):
        """The batch of ``step``; starts decoding ``step + 1`` in the background."""
        if self._ahead is not None and self._ahead[0] == step:
            result = self._ahead[1].result()
        else:
            result = self._make(step)
        self._ahead = (step + 1, self._pool.submit(self._make, step + 1))
        return result

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._ahead = None
