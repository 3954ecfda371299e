"""The one atomic write of tfxr: write a temporary file beside the target, then rename.

A reader never sees a half-written file and an interrupted write leaves the previous
version in place.  Files are created readable by the group and others (subject to the
umask), like ``open()`` would, so a shared project folder stays usable.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from typing import Any, Iterator

import yaml

TMP_PREFIX = ".tmp-"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``.

    For writers that take a file name (``model.save``, ``savefig``, ``TFRecordWriter``):
    ``suffix`` keeps an extension they insist on (e.g. ``.keras``).  On error the
    temporary file is removed and ``path`` is untouched.
    """
    path = os.fspath(path)
    directory = os.path.dirname(path) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + os.path.basename(path) + ".", suffix=suffix,
                                   dir=directory)
    except OSError as e:   # read-only or missing folder: name the file the caller asked for
        raise OSError(e.errno, e.strerror, path) from None
    os.close(fd)
    try:
        try:
            yield tmp
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except OSError as e:
            if e.filename not in (None, tmp):
                raise
            # e.g. ENOSPC while writing: the temporary is removed below, ``path`` untouched
            raise OSError(e.errno, e.strerror, path) from e
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> None:
    write_text(path, json.dumps(obj, indent=indent, allow_nan=True) + "\n")


def write_yaml(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, yaml.safe_dump(obj, sort_keys=False))


def remove_stale_temporaries(directory: str | os.PathLike) -> int:
    """Delete temporary files an interrupted run left in ``directory``; returns how many."""
    removed = 0
    for name in os.listdir(directory):
        full = os.path.join(directory, name)
        if name.startswith(TMP_PREFIX) and os.path.isfile(full):
            os.unlink(full)
            removed += 1
    return removed


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (shards, generators, downloads)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


#: longest file name :func:`safe_name` returns (bytes; file systems allow 255)
SAFE_NAME_MAX = 120
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+=@,")


def safe_name(text: str, suffix: str = "") -> str:
    """A file name made from data (an image id, a label, a prefix) that stays one plain name.

    Characters other than ASCII letters, digits and ``._-+=@,`` become ``_``; leading dots
    are replaced (no ``..``, no hidden files); long names are cut.  A name that had to change
    gets 8 hex digits of its sha256, so two different ids never share a file.  ``suffix``
    (e.g. ``.png``) is appended after all that.
    """
    cleaned = "".join(c if c in _SAFE_CHARS else "_" for c in text)
    stripped = cleaned.lstrip(".")
    cleaned = "_" * (len(cleaned) - len(stripped)) + stripped
    if cleaned != text or not cleaned or len(cleaned) > SAFE_NAME_MAX:
        tag = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        cleaned = f"{cleaned[:SAFE_NAME_MAX - 9]}-{tag}"
    return cleaned + suffix


def path_in(folder: str | os.PathLike, text: str, suffix: str = "") -> str:
    """``folder/<safe_name(text)><suffix>``: a data-derived file name confined to ``folder``."""
    return os.path.join(os.fspath(folder), safe_name(text, suffix))
