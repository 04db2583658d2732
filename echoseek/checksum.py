"""SHA-256 checksums of artifact files, streamed, and of whole artifacts.

An artifact's checksum is the SHA-256 of its files' hex digests concatenated in the order the
descriptor lists them, so it changes when any file's bytes or the file order change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

BLOCK = 1 << 20


def sha256_file(path: str | Path, block: int = BLOCK) -> str:
    """Hex SHA-256 of a file, read in ``block``-byte chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(block):
            digest.update(chunk)
    return digest.hexdigest()


def combined_sha256(digests: Sequence[str]) -> str:
    """SHA-256 of concatenated hex digests (the artifact-level checksum)."""
    return hashlib.sha256("".join(digests).encode()).hexdigest()
