"""tfxr.data.extract: archives are checked entry by entry, then unpacked with tarfile's data filter.

Regression tests for the link class the hostile-input pass found: link chains, ``dir/./link``,
and a link left in the target by one archive that a later archive of the same run writes through.
Each test asserts what was (not) written, inside and outside the target folder.
"""
from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from tfxr.cli import EXIT_OK, EXIT_REJECTED, EXIT_USAGE
from tfxr.data import extract
from tfxr.files import sha256_file


def make_tar(path: Path, entries: list[tuple]) -> Path:
    """A .tar.gz of entries: ("f", name[, bytes]) | ("d", name) | ("l", name, target) |
    ("h", name, target) | ("p", name) (a FIFO); a file without bytes holds "data of NAME".
    Also used by tests/test_shell_scripts.py."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, *rest in entries:
            info = tarfile.TarInfo(name)
            if kind == "f":
                data = rest[0] if rest else f"data of {name}".encode()
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
                continue
            info.type = {"d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE,
                         "p": tarfile.FIFOTYPE}[kind]
            info.linkname = rest[0] if rest else ""
            tar.addfile(info)
    return path


def every_path(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*")}


@pytest.fixture
def workspace(tmp_path):
    """tmp/archives (inputs), tmp/target/out (OUT_DIR) and tmp/target/sibling.txt (must never change)."""
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "sibling.txt").write_text("untouched")
    return tmp_path


def run_extract(capsys, *args) -> tuple[int, str]:
    code = extract.main([str(a) for a in args])
    return code, capsys.readouterr().err


CHAINS = {
    # a link whose own path goes through another link of the archive
    "link_through_link": [("l", "images/l", "."), ("l", "images/l/l2", ".."), ("f", "images/l/l2/x")],
    # a link whose *target* goes through another link: images/l is images, so l/../.. is OUT_DIR's parent
    "target_through_link": [("l", "images/l", "."), ("l", "images/m", "l/../.."), ("f", "images/m/x")],
    # the textual check saw 'images/./l' and 'images/l' as different paths
    "dot_component": [("l", "images/./up", ".."), ("l", "images/up/out", ".."), ("f", "images/up/out/x")],
    # a hard link to a symlink would make os.link follow it
    "hardlink_to_symlink": [("l", "images/s", "a.png"), ("f", "images/a.png"), ("h", "images/h", "images/s")],
}


@pytest.mark.parametrize("case", sorted(CHAINS))
def test_link_chains_are_refused_before_anything_is_written(case, workspace, capsys):
    archive = make_tar(workspace / "archives" / f"{case}.tar.gz", CHAINS[case])
    out = workspace / "target" / "out"
    before = every_path(workspace)
    code, err = run_extract(capsys, archive, out)
    assert code == EXIT_REJECTED
    assert f"refusing to extract {archive}" in err
    assert "symbolic link" in err
    assert every_path(workspace) - before == {"target/out"}
    assert every_path(out) == set()


def test_a_link_left_by_one_archive_cannot_be_written_through_by_the_next(workspace, capsys):
    first = make_tar(workspace / "archives" / "images_001.tar.gz",
                     [("f", "images/a.png"), ("l", "images/up", "..")])  # points inside OUT_DIR: allowed
    second = make_tar(workspace / "archives" / "images_002.tar.gz",
                      [("f", "images/b.png"), ("f", "images/up/up2/x")])
    third = make_tar(workspace / "archives" / "images_003.tar.gz", [("f", "images/c.png")])
    out = workspace / "target" / "out"
    code, err = run_extract(capsys, first, second, third, out)
    assert code == EXIT_REJECTED
    assert "images_002.tar.gz" in err and "images/up/up2/x" in err
    assert (out / "images" / "up").is_symlink()
    assert (out / "images" / "a.png").read_text() == "data of images/a.png"
    assert (out / "images" / "c.png").is_file()  # the other archives still proceed
    assert not (out / "images" / "b.png").exists()  # nothing of the refused archive
    assert not list(out.glob(".extracted-images_002.tar.gz-*"))
    assert len(list(out.glob(".extracted-images_001.tar.gz-*"))) == 1
    assert len(list(out.glob(".extracted-images_003.tar.gz-*"))) == 1
    assert not (out / "up2").exists() and not (workspace / "target" / "x").exists()


def test_an_existing_link_in_the_target_is_never_written_through(workspace, capsys):
    out = workspace / "target" / "out"
    (out / "images").mkdir(parents=True)
    os.symlink("../../sibling.txt", out / "images" / "a.png")  # a file entry would overwrite sibling.txt
    os.symlink("../..", out / "images" / "outside")             # a folder entry would land outside
    for name, entries in {"file": [("f", "images/a.png", b"evil")],
                          "folder": [("f", "images/outside/evil")]}.items():
        archive = make_tar(workspace / "archives" / f"images_{name}.tar.gz", entries)
        code, err = run_extract(capsys, archive, out)
        assert code == EXIT_REJECTED, name
        assert "symbolic link" in err or "outside" in err, err
    assert (workspace / "target" / "sibling.txt").read_text() == "untouched"
    assert not (workspace / "evil").exists() and not (workspace / "target" / "evil").exists()


def test_safe_links_are_extracted_and_a_rerun_skips(workspace, capsys):
    archive = make_tar(workspace / "archives" / "images_001.tar.gz", [
        ("d", "images/"), ("f", "images/a.png", b"png bytes"), ("l", "images/b.png", "a.png"),
        ("l", "latest", "images/a.png"), ("h", "images/c.png", "images/a.png"), ("f", "./images/./d.png"),
    ])
    out = workspace / "target" / "out"
    code, _ = run_extract(capsys, workspace / "archives", out)
    assert code == EXIT_OK
    assert (out / "images" / "b.png").read_bytes() == b"png bytes"
    assert (out / "images" / "c.png").read_bytes() == b"png bytes" and not (out / "images" / "c.png").is_symlink()
    assert (out / "latest").is_symlink() and (out / "images" / "d.png").is_file()
    marker_file = out / f".extracted-images_001.tar.gz-{sha256_file(archive)[:16]}"
    marker = marker_file.read_text()
    assert f"archive={archive}\n" in marker and "entries=6\n" in marker
    assert f"sha256={sha256_file(archive)}\n" in marker
    assert oct(marker_file.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    code = extract.main([str(workspace / "archives"), str(out)])
    assert code == EXIT_OK and "already extracted" in capsys.readouterr().out


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_a_missing_input_is_a_usage_error(tmp_path, capsys):
    code, err = run_extract(capsys, tmp_path / "nope", tmp_path / "out")
    assert code == EXIT_USAGE and "no such archive or directory" in err and "nope" in err
    (tmp_path / "empty").mkdir()
    code, err = run_extract(capsys, tmp_path / "empty", tmp_path / "out")
    assert code == EXIT_USAGE and "no images_*.tar.gz in" in err


def test_the_glob_option_picks_other_archives(tmp_path, capsys):
    make_tar(tmp_path / "in" / "part1.tar", [("f", "x/1.png")])
    make_tar(tmp_path / "in" / "images_001.tar.gz", [("f", "x/2.png")])
    code, _ = run_extract(capsys, "--glob", "part*.tar", tmp_path / "in", tmp_path / "out")
    assert code == EXIT_OK
    marker = f".extracted-part1.tar-{sha256_file(tmp_path / 'in' / 'part1.tar')[:16]}"
    assert every_path(tmp_path / "out") == {"x", "x/1.png", marker}


def test_two_archives_of_one_name_in_different_folders_are_both_extracted(workspace, capsys):
    """The marker is keyed by the archive's checksum, not its name: the second archive called
    images_001.tar.gz (another folder, other content) is not skipped as 'already extracted'."""
    first = make_tar(workspace / "a" / "images_001.tar.gz", [("f", "images/one.png", b"1")])
    second = make_tar(workspace / "b" / "images_001.tar.gz", [("f", "images/two.png", b"2")])
    out = workspace / "target" / "out"
    assert run_extract(capsys, first, out)[0] == EXIT_OK
    code = extract.main([str(second), str(out)])
    text = capsys.readouterr().out
    assert code == EXIT_OK and "already extracted" not in text, text
    assert (out / "images" / "one.png").read_bytes() == b"1"
    assert (out / "images" / "two.png").read_bytes() == b"2"
    assert len(list(out.glob(".extracted-images_001.tar.gz-*"))) == 2
