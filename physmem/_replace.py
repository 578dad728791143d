"""Replace a file that other programs read at any moment (node_exporter's textfile collector,
NFD's feature files), safely in a directory other users may write to."""
from __future__ import annotations

import os
import tempfile

__all__ = ["replace_file"]


def replace_file(directory: str, name: str, data: bytes, *, mode: int = 0o644) -> str:
    """Write ``data`` to ``directory/name`` atomically; returns that path.

    The temporary file comes from ``mkstemp`` in ``directory``: an unpredictable dotfile name
    created with ``O_EXCL`` (a symlink planted there is never followed, a name guessed ahead
    is never reused), ``fchmod`` to ``mode`` (readable by a reader running as another user),
    then ``rename``, which replaces ``name`` itself (even a symlink planted at ``name``) and
    never shows a reader half a file. Readers that skip dotfiles (NFD) or read only ``*.prom``
    (node_exporter) never see the temporary file. On failure it is removed.
    """
    if not name or "/" in name or name in (".", ".."):
        raise ValueError(f"file name {name!r} must be one path component")
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=".tmp", dir=directory)
    try:
        try:
            os.fchmod(fd, mode)
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        os.rename(tmp, os.path.join(directory, name))
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return os.path.join(directory, name)
