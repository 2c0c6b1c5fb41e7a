"""Read files out of a Qt resource bundle (.rcc, format versions 1-3): the gcompris photos live in them."""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator
from pathlib import Path

_COMPRESSED, _DIRECTORY, _COMPRESSED_ZSTD = 0x01, 0x02, 0x04


def read_rcc(path: str | Path) -> Iterator[tuple[str, bytes]]:
    """Yield (resource path, file bytes) for every file in the bundle."""
    blob = Path(path).read_bytes()
    if blob[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">4I", blob[4:20])
    node_size = 14 if version == 1 else 22

    def name_at(offset: int) -> str:
        (length,) = struct.unpack(">H", blob[names + offset : names + offset + 2])
        return blob[names + offset + 6 : names + offset + 6 + 2 * length].decode("utf-16-be")

    def walk(index: int, prefix: str) -> Iterator[tuple[str, bytes]]:
        base = tree + index * node_size
        name_offset, flags = struct.unpack(">IH", blob[base : base + 6])
        name = name_at(name_offset) if index else ""
        here = f"{prefix}/{name}" if name else prefix
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", blob[base + 6 : base + 14])
            for child in range(first, first + count):
                yield from walk(child, here)
            return
        (offset,) = struct.unpack(">I", blob[base + 10 : base + 14])
        (size,) = struct.unpack(">I", blob[data + offset : data + offset + 4])
        payload = blob[data + offset + 4 : data + offset + 4 + size]
        if flags & _COMPRESSED:
            payload = zlib.decompress(payload[4:])  # qCompress: 4-byte length, then zlib
        elif flags & _COMPRESSED_ZSTD:
            raise ValueError(f"{here} in {path} is zstd-compressed, which this reader does not handle")
        yield here, payload

    yield from walk(0, "")
