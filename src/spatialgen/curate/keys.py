"""Sample keys that survive the project's shards: safe characters, bounded length, unique per shard.

Every shard stores a sample as the tar members ``KEY.FIELD`` and reads the key back as the name up
to its first dot, so a key must not hold a dot or a slash. Tar's USTAR names end at 100 bytes, and
a source may name its files anything: ``./0001.jpg``, ``photo.2020.jpg``, 150-character captions
as file names, two ``a.png`` in two folders. :func:`sample_key` maps each source key to one that
keeps what it can of the original (so a user recognises it) and adds a short stable hash whenever
it had to change anything, so two different source keys never meet in one key.
"""

from __future__ import annotations

import hashlib
import posixpath
import re

#: The longest key written (room for ``.normal.npy`` and a ``-2`` duplicate suffix inside 100 bytes).
MAX_KEY = 64
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def _digest(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=4).hexdigest()


def sample_key(source_key: str) -> str:
    """A shard-safe key for ``source_key``: itself when already safe, else a readable form plus its hash."""
    normal = posixpath.normpath(source_key.replace("\\", "/")).lstrip("/") if source_key else ""
    normal = "" if normal == "." else normal
    safe = _UNSAFE.sub("_", normal).strip("_")
    if safe and safe == normal and len(safe) <= MAX_KEY:
        return safe
    return f"{safe[: MAX_KEY - 9]}-{_digest(source_key)}" if safe else f"key-{_digest(source_key)}"


class KeyAllocator:
    """Unique keys within one shard: a key met again (two files of one stem, a repeated id) gets ``-2``, ``-3``."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, source_key: str) -> str:
        key = sample_key(source_key)
        candidate, n = key, 1
        while candidate in self._used:  # also steps over a source key that happens to read "a-2"
            n += 1
            candidate = f"{key}-{n}"
        self._used.add(candidate)
        return candidate
