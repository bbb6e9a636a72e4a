"""Reading and atomically writing the emulator's state file (``--state-file``).

The file is written whole on every change, to a temporary file in the same directory that then
replaces it (``os.replace``), so that it always holds a complete state: a crash, even ``kill -9``,
loses nothing that was answered.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


class StateFileError(RuntimeError):
    """The state file cannot be read, understood or written; the message names the file."""


def read_state_file(path: Path) -> bytes | None:
    """The file's content, or ``None`` if it does not exist yet.

    :raises StateFileError: if it exists but cannot be read (a directory, no permission...).
    """
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise StateFileError(f"cannot read the emulator state file {path}: {exc.strerror or exc}") from None


def write_state_file(path: Path, data: bytes) -> None:
    """Replace the file's content with ``data`` in one step.

    :raises StateFileError: if it cannot be written (missing directory, no permission, disk full).
    """
    directory = path.parent
    try:
        fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise StateFileError(f"cannot write the emulator state file {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise StateFileError(f"cannot write the emulator state file {path}: {exc.strerror or exc}") from None
