"""Whole files written atomically: after a crash at any moment a file holds its old content or its new one.

    write_atomic(path, text_or_bytes)
    with atomic_file(path, "wb") as f:      for writers that want a file object (torch.save)
        torch.save(obj, f)

The new content goes into a temporary file in the same folder (`.<name>.<random>.tmp`), which is flushed and
fsynced; `os.replace` puts it over the target in one step (a rename within one folder is atomic), and then
the folder is fsynced so that the rename itself survives a power cut. A crash before the rename leaves the
target as it was, and perhaps a stray `.tmp` file beside it; after the rename the target is whole.

Appending a record to a JSONL file (`rlhf_lib.feedback.append_record`) is another operation and does not
come here; checkpoints (`rlhf_lib.checkpoint`) swap whole folders, and write each file in them with this.
"""

from __future__ import annotations

import os
import secrets
import stat
from contextlib import contextmanager
from pathlib import Path


def fsync_file(path) -> None:
    """Flush a file that is already written (by another library, for example) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_folder(folder) -> None:
    """Flush a folder's entries to the disk, so that a file created or renamed in it survives a power cut."""
    if os.name == "nt":  # Windows cannot open a folder as a file; there the rename is all we can do
        return
    fsync_file(folder)


@contextmanager
def atomic_file(path, mode: str = "w"):
    """An open temporary file beside `path` ("w": UTF-8 text, "wb": bytes). When the block ends without an
    error, it is flushed, fsynced and renamed over `path`, and the folder is fsynced; when the block raises,
    it is removed and `path` is left as it was. A new file gets the usual permissions; a replaced one keeps
    its own. The folder must exist."""
    if mode not in ("w", "wb"):
        raise ValueError(f"mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # 0o666 less the umask, as open() does
    try:
        with open(fd, mode, encoding=None if mode == "wb" else "utf-8") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_folder(path.parent)


def write_atomic(path, data: str | bytes) -> Path:
    """Write `data` (text as UTF-8, or bytes) as the whole content of `path`, atomically (see `atomic_file`)."""
    with atomic_file(path, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    return Path(path)
