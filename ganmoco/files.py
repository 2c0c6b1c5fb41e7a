"""Writing output files: whole or not at all, with the permissions any other new file would get."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    # /proc says it without changing it; os.umask can only read by setting, which another thread would see
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_output(path: Path, suffix: str) -> Iterator[str]:
    """Yield a temporary file name beside `path` to write; when the block succeeds it becomes `path`, with
    mode 0666 less the umask (mkstemp's 0600 would hide it from other users and web servers); when it fails
    it is removed, so no partial file is ever left."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=suffix)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
