"""The one check that a path read from a file stays inside the folder the user named.

A manifest names its shards, a raw-image index names its images and a label file names
its images; all of them are input a user may have been handed.  Every such path is
resolved with :func:`inside`: relative to the folder, after following symbolic links
(``os.path.realpath``), and refused with a :class:`~tfxr.errors.ManifestError` (exit 2)
naming the file it came from and the entry when it lands outside that folder, so
``../outside/x.tfrecord``, ``/etc/passwd`` or a link to elsewhere is never read, written
or deleted.
"""
from __future__ import annotations

import os

from tfxr.errors import ManifestError


def is_inside(path: str, folder: str) -> bool:
    """True when ``path`` (links followed) is ``folder`` itself or lies below it."""
    real, root = os.path.realpath(path), os.path.realpath(folder)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def inside(folder: str, entry: str, listed_in: str, what: str = "entry") -> str:
    """``entry`` (relative to ``folder``, or absolute) as a path, if it resolves inside ``folder``.

    ``listed_in`` is the file the entry was read from (the manifest, the index, the label
    file) and ``what`` says what kind of entry it is; both go into the error message.
    The returned path is ``folder``/``entry`` as given (not the resolved one), so
    messages keep naming the paths the user knows.
    """
    if not isinstance(entry, str) or not entry or "\x00" in entry:
        raise ManifestError(f"{listed_in}: {what} {entry!r} is not a file name")
    path = os.path.join(folder, entry)
    if not is_inside(path, folder):
        raise ManifestError(f"{listed_in}: {what} {entry!r} resolves outside {folder} "
                            f"({os.path.realpath(path)}); refused")
    return path
