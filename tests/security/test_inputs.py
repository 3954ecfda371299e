"""Hostile numbers, YAML files, output folders and images: one line, exit 2, nothing half-written."""
from __future__ import annotations

import errno
import os
import struct
import sys
import time
import zlib

import numpy as np
import pytest

from tests.conftest import REPO, run
from tfxr import files
from tfxr.cli import run_main
from tfxr.config import SEED_MAX, parse_config
from tfxr.errors import ConfigError
from tfxr.train import TrainConfig

BILLION_LAUGHS = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, "
    f"*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(8))


def _train_cfg(*argv):
    return parse_config(TrainConfig, list(argv), "python -m tfxr.train")[0]


# --------------------------------------------------------------------------- numbers
@pytest.mark.parametrize("argv, message", [
    (["--lr", "nan"], "lr: nan is not a finite number"),
    (["--lr", "inf"], "lr: inf is not a finite number"),
    (["--set", "lr=.inf"], "lr: inf is not a finite number"),
    (["--set", "weight_decay=.NaN"], "weight_decay: nan is not a finite number"),
    (["--set", "pipeline.augment.rotation_deg=nan"], "pipeline.augment.rotation_deg: nan is not a finite number"),
    (["--set", "pipeline.augment.zoom=1.5"], "pipeline.augment.zoom: 1.5 is above the maximum 0.9"),
    (["--set", "pipeline.augment.noise_std=-0.1"], "pipeline.augment.noise_std: -0.1 is below the minimum 0.0"),
    (["--warmup-epochs=-inf"], "--warmup-epochs: -inf is not a finite number"),
    (["--seed", "-1"], "seed: -1 is below the minimum 0"),
    (["--seed", str(2**40)], f"seed: {2**40} is above the maximum {SEED_MAX}"),
    (["--seed", "2**40"], "seed: cannot use '2**40' as int"),
])
def test_numbers_are_finite_and_in_range(argv, message):
    with pytest.raises(ConfigError) as info:
        _train_cfg(*argv)
    assert message in str(info.value)


def test_the_largest_seed_is_accepted():
    assert _train_cfg("--seed", str(SEED_MAX)).seed == SEED_MAX


@pytest.mark.parametrize("argv", [
    ["tfxr.train", "--seed", "-1", "--data", "d"],
    ["tfxr.gan", "sample", "--generator", "g.keras", "--out", "o", "--seed", str(2**40)],
    ["tfxr.gan", "balance", "--data", "d", "--generator", "g.keras", "--out", "o", "--seed", "-1"],
    ["tfxr.evaluate", "--model", "m", "--data", "d", "--seed", str(2**40)],
])
def test_bad_seeds_are_one_line_on_every_command(argv, tmp_path):
    r = run([sys.executable, "-m", *argv], check=False, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and r.stderr.startswith("tfxr: error: ") and "seed" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not os.listdir(tmp_path)


# --------------------------------------------------------------------------- YAML
def test_yaml_alias_bomb_is_refused_at_once(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BILLION_LAUGHS)
    assert len(BILLION_LAUGHS) < 1024       # 9**9 (387 million) strings when expanded
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        _train_cfg("--config", str(bomb))
    assert time.monotonic() - start < 5
    assert str(bomb) in str(info.value) and "anchors and aliases" in str(info.value) and "line 1" in str(info.value)


def test_yaml_alias_in_a_set_value_is_refused():
    with pytest.raises(ConfigError, match="--set pipeline.augment: .*anchors and aliases"):
        _train_cfg("--set", "pipeline.augment={a: &x 1, b: *x}")


def test_non_utf8_yaml_is_one_line(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("model: tb_cnn\nout: r\u00e9sultats\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        _train_cfg("--config", str(bad))
    assert str(bad) in str(info.value) and "not UTF-8" in str(info.value)
    bom = tmp_path / "bom.yaml"
    bom.write_bytes("\ufeffepochs: 3\n".encode("utf-8"))
    assert _train_cfg("--config", str(bom)).epochs == 3


# --------------------------------------------------------------------------- output folders
def test_out_naming_an_existing_file_is_one_line(synthetic_tfrec, tmp_path):
    (tmp_path / "taken").write_text("keep me")
    r = run([sys.executable, "-m", "tfxr.train", "--data", os.path.relpath(synthetic_tfrec, tmp_path), "--out", "taken",
             "--epochs", "1", "--steps-per-epoch", "1"], check=False, cwd=tmp_path, env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 2, r.stderr
    errors = [x for x in r.stderr.splitlines() if x.startswith("tfxr: error:")]
    assert len(errors) == 1 and "taken" in errors[0] and "Traceback" not in r.stderr
    assert (tmp_path / "taken").read_text() == "keep me"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EACCES, errno.EROFS])
def test_a_full_or_read_only_folder_names_the_path_and_keeps_the_old_file(tmp_path, capsys, monkeypatch, code):
    """The file system refusing a write (tests run as root, so the refusal is simulated at the
    write itself): the one atomic write names the target, the old version stays, no temporary."""
    target = tmp_path / "history.json"
    target.write_text("old")
    real_open = open

    class Refusing:
        def __init__(self, fh):
            self.fh = fh

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.fh.close()

        def write(self, data):
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(files, "open", lambda *a, **k: Refusing(real_open(*a, **k)), raising=False)
    assert run_main(lambda: files.write_json(target, {"new": 1})) == 2
    err = capsys.readouterr().err
    assert err == f"tfxr: error: {target}: {os.strerror(code)} ({errno.errorcode[code]})\n"
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["history.json"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_eacces(tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        assert run_main(lambda: files.write_text(folder / "a.txt", "x")) == 2
        assert f"{folder / 'a.txt'}: Permission denied (EACCES)" in capsys.readouterr().err
    finally:
        folder.chmod(0o700)


def test_other_os_errors_stay_tracebacks():
    """A bug (an OSError without a file, or one no user can fix) is not hidden as bad input."""
    with pytest.raises(OSError):
        run_main(lambda: (_ for _ in ()).throw(OSError(errno.EBADF, "Bad file descriptor")))


# --------------------------------------------------------------------------- file names from data
@pytest.mark.parametrize("hostile", ["../../escape", "/etc/passwd", "a/b", "nul\0byte", "..", ".", "", "x" * 5000,
                                     "id\nwith newline", "\u00e9\u00e8", "..\\..\\win"])
def test_names_from_data_stay_inside_the_folder(hostile, tmp_path):
    path = files.path_in(tmp_path, hostile, ".png")
    name = os.path.basename(path)
    assert os.path.dirname(path) == str(tmp_path) and not name.startswith(".")
    assert "/" not in name and "\0" not in name and len(name.encode()) <= 255
    with open(path, "wb") as fh:      # a real file name the OS accepts
        fh.write(b"x")
    assert os.listdir(tmp_path) == [name]


def test_plain_names_are_kept_and_changed_ones_never_collide():
    assert files.safe_name("00000001_000_Nodule", ".png") == "00000001_000_Nodule.png"
    assert files.safe_name("a/b") != files.safe_name("a_b") and files.safe_name("a/b") != files.safe_name("a:b")
    assert files.safe_name("x" * 5000) != files.safe_name("x" * 4999)


def test_localize_overlays_named_after_hostile_ids_stay_in_out(tmp_path):
    from tfxr.evaluation.boxes import BoxedImage
    from tfxr.evaluation.localization import write_overlays

    def cam(images, j):   # a stand-in class activation map: a centred blob, p = 0.9
        heat = np.zeros((1, 16, 16), np.float32)
        heat[0, 4:12, 4:12] = 1.0
        return heat, np.array([[0.9]], np.float32)

    ids = ["../../../escaped", "/tmp/abs", "nul\0", "y" * 400]
    items = [BoxedImage(i, np.zeros((16, 16, 1), np.float32), np.ones(1, np.float32), [(0, (0.2, 0.2, 0.6, 0.6))])
             for i in ids]
    out = tmp_path / "out" / "overlays"
    written = write_overlays(cam, items, ["../Nodule"], {0: 0.5}, str(out))
    assert len(written) == 4 and all(os.path.dirname(p) == str(out) for p in written)
    assert sorted(os.listdir(out)) == sorted(os.path.basename(p) for p in written)
    assert sorted(os.listdir(tmp_path)) == ["out"] and not os.path.exists("/tmp/abs_..-Nodule.png")


# --------------------------------------------------------------------------- images given as --generated
def _png_header_only(path, width, height):
    """A PNG that declares width x height but holds one scanline: what a bomb's header says."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(20000, 20000), (12000, 9000), (5000, 4000)])
def test_a_huge_generated_png_is_refused_before_decoding(size, tmp_path):
    from tfxr.evaluation.generative import load_png_dir

    folder = tmp_path / "samples"
    folder.mkdir()
    _png_header_only(folder / "g0.png", *size)
    with pytest.raises(ConfigError) as info:
        load_png_dir(str(folder))
    assert str(folder / "g0.png") in str(info.value) and f"{size[0]}x{size[1]}" in str(info.value) \
        or "decompression bomb" in str(info.value)


def test_a_huge_generated_png_from_the_command_line(synthetic_tfrec, tmp_path):
    (tmp_path / "samples").mkdir()
    _png_header_only(tmp_path / "samples" / "g0.png", 20000, 20000)
    r = run([sys.executable, "-m", "tfxr.evaluate", "gan", "--generated", "samples", "--real",
             os.path.relpath(synthetic_tfrec, tmp_path), "--max-real", "40"], check=False, cwd=tmp_path,
            env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert len([x for x in r.stderr.splitlines() if x.startswith("tfxr: error:")]) == 1
