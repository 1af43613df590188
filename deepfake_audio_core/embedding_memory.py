"""Facts about the recording behind an embedding, remembered by the embedding itself.

A pipeline hands out bare (256,) embeddings (`Pipeline.embed`), and callers hand them back
later (`Pipeline.clone(embedding=...)`). What was measured on the recording at that moment
(its pitch, its speech level) would be lost in between; an `EmbeddingMemory` keeps it, keyed
by the embedding's exact float32 bytes, so the same values in another array find it too.
"""
from __future__ import annotations

import hashlib
from typing import Generic, TypeVar

import numpy as np

Value = TypeVar("Value")


class EmbeddingMemory(Generic[Value]):
    """The `size` most recently stored values, one per embedding.

    Thread-safe enough for a server: a dict write and read are atomic in CPython, and a
    lost entry only means the caller falls back to what it does without one.
    """

    def __init__(self, size: int = 256):
        self.size = size
        self._values: dict[bytes, Value] = {}

    @staticmethod
    def key(embedding: np.ndarray) -> bytes:
        """The embedding's identity: a hash of its float32 bytes."""
        return hashlib.sha1(np.ascontiguousarray(embedding, dtype=np.float32).tobytes()).digest()

    def put(self, embedding: np.ndarray, value: Value) -> None:
        """Keep `value` for `embedding` (replacing an older one), forgetting the oldest past `size`."""
        key = self.key(embedding)
        self._values.pop(key, None)
        self._values[key] = value
        while len(self._values) > self.size:
            self._values.pop(next(iter(self._values)), None)

    def get(self, embedding: np.ndarray, default: Value | None = None) -> Value | None:
        """The value kept for `embedding`, or `default`."""
        return self._values.get(self.key(embedding), default)
