"""Unpack dataset archives (NIH ChestX-ray14's ``images_*.tar.gz``) safely into one folder.

The command is ``python -m tfxr.extract ARCHIVE_OR_DIR... OUT_DIR`` (:mod:`tfxr.extract`;
``python -m tfxr.data.extract`` and ``tfrecords/extract_images.sh`` are other names of it).
A directory argument stands for its glob's files (default ``images_*.tar.gz``), sorted.

Downloaded archives are untrusted input: an entry must never land outside OUT_DIR.
Every archive is checked completely before anything is written, then extracted with
Python's ``tarfile`` ``filter="data"`` (Python >= 3.11.4), which refuses absolute paths,
``..`` escapes, links pointing outside the target and device files.  On top of that, a
path may never pass through a symbolic link -- neither one the archive itself creates
(link chains such as ``l -> .`` then ``l/l2 -> ..``) nor one already in OUT_DIR (a link
left by an earlier archive of the same run) -- because the data filter checks each
entry against the disk as it is at that moment, which a chain of links can outrun.
The NIH archives hold only ``images/`` and regular PNG files, so this costs nothing.

An archive extracted completely leaves ``OUT_DIR/.extracted-<archive name>-<sha256[:16]>``
(recording its real path and full sha256) and is skipped on later runs only when the same
bytes come again: another archive of the same name, from another folder or re-downloaded,
is extracted (delete the marker to extract the same archive again).  A refused or damaged
archive is reported and the others are still processed.
"""
from __future__ import annotations

import datetime
import os
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from tfxr import log
from tfxr.errors import ConfigError, SourceError
from tfxr.files import sha256_file, write_text
from tfxr.progress import progress_bar

DEFAULT_GLOB = "images_*.tar.gz"
MARKER_PREFIX = ".extracted-"
_READ_ERRORS = (tarfile.TarError, EOFError, OSError, zlib.error)


class UnsafeEntry(SourceError):
    """An archive entry that would write, or link, outside the target folder."""


def find_archives(inputs: list[str], pattern: str = DEFAULT_GLOB) -> list[Path]:
    """The archives named on the command line; a directory gives its ``pattern`` files, sorted."""
    archives: list[Path] = []
    for arg in inputs:
        path = Path(arg)
        if path.is_dir():
            found = sorted(p for p in path.glob(pattern) if p.is_file())
            if not found:
                raise SourceError(f"no {pattern} in {path}")
            archives += found
        elif path.is_file():
            archives.append(path)
        else:
            raise SourceError(f"no such archive or directory: {path}")
    return archives


@dataclass
class LinkGuard:
    """Refuses paths that pass through a symbolic link, in the archive or in ``out_dir``.

    ``archive_links`` are the links the archive being checked creates (normalised
    relative paths), recorded in entry order, because during the check they are not
    on disk yet.  Links on disk are looked up with ``os.path.islink`` (no following).
    """

    out_dir: Path
    archive_links: set[str] = field(default_factory=set)

    def is_link(self, relative: str) -> bool:
        return relative in self.archive_links or os.path.islink(self.out_dir / relative)

    def describe_link(self, relative: str) -> str:
        if relative in self.archive_links:
            return f"the archive's symbolic link {relative}"
        return (f"the symbolic link {relative} already in the target folder (to extract into a "
                f"linked folder, give its real path as OUT_DIR)")

    def walk(self, parts: list[str], what: str) -> str:
        """Resolve ``parts`` (may hold '..') from OUT_DIR without going through a link.

        Every component but the last must be a real directory (or not exist yet);
        returns the normalised relative path.
        """
        stack: list[str] = []
        for part in parts:
            if stack and self.is_link("/".join(stack)):
                raise UnsafeEntry(f"{what} goes through {self.describe_link('/'.join(stack))}")
            if part == "..":
                if not stack:
                    raise UnsafeEntry(f"{what} points outside the target folder")
                stack.pop()
            else:
                stack.append(part)
        return "/".join(stack)


def _parts(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def check_entry(member: tarfile.TarInfo, guard: LinkGuard) -> None:
    """Raise UnsafeEntry unless ``member`` is a plain file, folder or link that stays inside.

    Records the links it accepts in ``guard`` so that later entries cannot go through them.
    """
    name = member.name
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise UnsafeEntry(f"{name}: special file (device, FIFO or other), not data")
    if not name or name.startswith("/"):
        raise UnsafeEntry(f"{name}: absolute path")
    parts = _parts(name)
    if ".." in parts:
        raise UnsafeEntry(f"{name}: '..' in path")
    if not parts:
        raise UnsafeEntry(f"{name!r}: empty entry name")
    relative = guard.walk(parts, name)
    if not member.issym() and os.path.islink(guard.out_dir / relative):
        raise UnsafeEntry(f"{name}: would write through {guard.describe_link(relative)}")
    if member.issym():
        if member.linkname.startswith("/"):
            raise UnsafeEntry(f"{name} -> {member.linkname}: symbolic link to an absolute path")
        # The link's target, resolved from the link's folder, must stay inside and must
        # itself not go through a link (its last component may be one: it was checked).
        guard.walk(parts[:-1] + _parts(member.linkname), f"{name} -> {member.linkname}")
        guard.archive_links.add(relative)
    elif member.islnk():
        target = member.linkname
        if target.startswith("/"):
            raise UnsafeEntry(f"{name} link to {target}: hard link to an absolute path")
        if ".." in _parts(target):
            raise UnsafeEntry(f"{name} link to {target}: hard link with '..' in its target")
        # os.link follows a symbolic link at the target: no link anywhere on the way.
        resolved = guard.walk(_parts(target), f"{name} link to {target}")
        if guard.is_link(resolved):
            raise UnsafeEntry(f"{name} link to {target}: hard link to a symbolic link")
    try:
        tarfile.data_filter(member, str(guard.out_dir))
    except tarfile.FilterError as e:
        raise UnsafeEntry(f"{name}: {e}") from None


def require_data_filter() -> None:
    if not hasattr(tarfile, "data_filter"):
        raise ConfigError(f"Python {sys.version.split()[0]} has no tarfile data filter; "
                          "use Python >= 3.11.4 (or 3.10.12 / 3.9.17) to extract archives safely")


@dataclass
class ArchiveExtractor:
    """Checks then extracts archives into ``out_dir``, one marker file per finished archive."""

    out_dir: Path
    show_progress: bool = False

    def marker(self, archive: Path, digest: str) -> Path:
        """The marker of this archive's bytes: keyed by its name and checksum, so two archives
        of one name (other folders, a new download) never pass for each other."""
        return self.out_dir / f"{MARKER_PREFIX}{archive.name}-{digest[:16]}"

    def check(self, tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
        """All entries, or UnsafeEntry for the first one that is not safe (nothing written)."""
        guard = LinkGuard(self.out_dir)
        members = tar.getmembers()
        for member in members:
            check_entry(member, guard)
        return members

    def extract(self, tar: tarfile.TarFile, members: list[tarfile.TarInfo], tag: str) -> None:
        """Extract with the data filter plus the on-disk link check, entry by entry."""
        guard = LinkGuard(self.out_dir)
        bar = progress_bar(len(members), tag, enabled=self.show_progress, unit="file")

        def data_filter_without_links(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo:
            # Links extracted so far are on disk now: the guard sees them with islink.
            check_entry(member, guard)
            bar.update()
            return tarfile.data_filter(member, dest)

        try:
            tar.extractall(self.out_dir, members=members, filter=data_filter_without_links)
        finally:
            bar.close()

    def run_one(self, archive: Path, tag: str) -> bool:
        """Extract one archive; True when it is extracted (or was already), False when refused."""
        try:
            digest = sha256_file(archive)
        except OSError as e:
            log.error(f"cannot read {archive}: {e.strerror or e}")
            return False
        marker = self.marker(archive, digest)
        if marker.is_file() and f"sha256={digest}\n" in marker.read_text(errors="replace"):
            print(f"{tag}: already extracted ({marker}), skipping", flush=True)
            return True
        print(f"{tag}: checking every entry", flush=True)
        try:
            with tarfile.open(archive, "r:*") as tar:
                try:
                    members = self.check(tar)
                except UnsafeEntry as e:
                    log.error(f"refusing to extract {archive}: {e}")
                    return False
                except _READ_ERRORS as e:
                    log.error(f"cannot list {archive} (damaged or incomplete?): {e}")
                    return False
                print(f"{tag}: {len(members)} entries are safe; extracting into {self.out_dir}", flush=True)
                self.extract(tar, members, tag)
        except UnsafeEntry as e:
            log.error(f"refusing to extract the rest of {archive}: {e}")
            return False
        except tarfile.FilterError as e:
            log.error(f"refusing to extract the rest of {archive}: {e}")
            return False
        except _READ_ERRORS as e:
            verb = "cannot list" if isinstance(e, tarfile.ReadError) else "extracting failed for"
            log.error(f"{verb} {archive} (damaged or incomplete?): {e}")
            return False
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        write_text(marker, f"archive={archive}\nreal_path={os.path.realpath(archive)}\n"
                           f"sha256={digest}\nbytes={archive.stat().st_size}\n"
                           f"entries={len(members)}\nextracted={stamp}\n")
        print(f"{tag}: done", flush=True)
        return True

    def run(self, archives: list[Path]) -> list[Path]:
        """Extract every archive; returns the ones that were refused or failed."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        failed = []
        for number, archive in enumerate(archives, start=1):
            if not self.run_one(archive, f"[{number}/{len(archives)}] {archive.name}"):
                failed.append(archive)
        return failed


def main(argv: list[str] | None = None) -> int:
    """``python -m tfxr.data.extract``, the older name of ``python -m tfxr.extract``: :func:`tfxr.extract.main`."""
    from tfxr.extract import main as command   # lazy: the library does not import its command line

    return command(argv)


if __name__ == "__main__":
    sys.exit(main())
