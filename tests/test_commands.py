"""Every data and model command the way a user types it: from another working directory with
relative paths, ``--set KEY=VALUE`` beside the flags, and a bad value as one ``tfxr: error:``
line with exit 2 before anything is written (tfxr.tfrecords, tfxr.stats, tfxr.extract,
tfxr.report, tfxr.gan sample|balance, tfxr.launch; the dispatcher of tfxr.cli.run_command)."""
from __future__ import annotations

import json
import os
import sys
import tarfile

import pytest

from tests.conftest import REPO, run
from tfxr import cli

ENV = {"PYTHONPATH": str(REPO)}


def _tfxr(cwd, *args, check=True):
    return run([sys.executable, "-m", *args], cwd=cwd, env=ENV, check=check)


def _one_error_line(r, message: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("tfxr: error: ") and message in lines[0], r.stderr


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    """A tiny phantom set written with relative paths and --set, from its parent folder."""
    root = tmp_path_factory.mktemp("cmd")
    r = _tfxr(root, "tfxr.tfrecords", "write", "--source", "phantoms", "--num-images", "40",
              "--phantom-size", "32", "--image-size", "32", "--out", "ph", "--quiet",
              "--set", "shards=2", "--set", "seed=3")
    assert "wrote ph/manifest.json" in r.stderr or "manifest.json" in r.stderr, r.stderr
    return root


# --------------------------------------------------------------------------- tfrecords
def test_write_takes_relative_paths_set_and_the_old_flag_names(phantoms):
    manifest = json.loads((phantoms / "ph" / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["image_size"] == 32
    assert all(len(s["shards"]) <= 2 for s in manifest["splits"].values())
    assert sum(s["count"] for s in manifest["splits"].values()) == 40
    # the command recorded is the one typed (the old option names still work: --synthetic-size)
    assert manifest["command"].split()[3:6] == ["write", "--source", "phantoms"]
    old = _tfxr(phantoms, "tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "20",
                "--synthetic-size", "16", "--synthetic-task", "tb", "--image-size", "16", "--out", "old", "--quiet")
    assert json.loads((phantoms / "old" / "manifest.json").read_text())["image_size"] == 16, old.stderr


def test_verify_from_another_folder(phantoms):
    r = _tfxr(phantoms / "ph", "tfxr.tfrecords", "verify", ".")
    assert r.stdout.strip() == ".: OK"


@pytest.mark.parametrize("args,message", [
    (["write", "--source", "phantoms", "--out", "o", "--workers", "0"], "workers: 0 is below the minimum 1"),
    (["write", "--source", "phantoms", "--out", "o", "--set", "prevalence=1.5"], "prevalence: 1.5 is above the maximum 1"),
    (["write", "--source", "phantoms", "--out", "o", "--seed", "-1"], "seed: -1 is below the minimum 0"),
    (["write", "--source", "dicomdir", "--out", "o"], "source: unknown value 'dicomdir'"),
    (["write", "--out", "o"], "--source is required"),
    (["write", "--source", "phantoms", "--out", "o", "--image-size"], "expected one argument"),
    (["write", "--source", "phantoms", "--out", "o", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["verify"], "DATA_DIR is required"),
    (["convert"], "unknown command 'convert' (allowed: write, verify)"),
    ([], "give a command first: write, verify"),
])
def test_tfrecords_bad_values_are_one_line(tmp_path, args, message):
    _one_error_line(_tfxr(tmp_path, "tfxr.tfrecords", *args, check=False), message)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- stats
def test_stats_relative_paths_and_set(phantoms, tmp_path):
    r = _tfxr(phantoms, "tfxr.stats", "ph", "--set", "json=stats.json", "--grid", "grid.png")
    assert r.stdout.startswith("ph: ") and "patient overlap: " in r.stdout
    numbers = json.loads((phantoms / "stats.json").read_text())
    manifest = json.loads((phantoms / "ph" / "manifest.json").read_text())
    assert numbers["counts"] == {s: v["count"] for s, v in manifest["splits"].items()}
    assert (phantoms / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the older name of the command gives the same table
    assert _tfxr(phantoms, "tfxr.data.stats", "ph").stdout == r.stdout.replace(f"wrote grid.png\n", "")


@pytest.mark.parametrize("args,message", [
    ([], "DATA_DIR is required"),
    (["nowhere"], "nowhere"),
    (["a", "b"], "unrecognized arguments: b"),
    (["a", "--set", "grid"], "--set takes key=value"),
])
def test_stats_bad_values_are_one_line(tmp_path, args, message):
    _one_error_line(_tfxr(tmp_path, "tfxr.stats", *args, check=False), message)


# --------------------------------------------------------------------------- extract
def _archive(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    src = path.parent / "x.png"
    src.write_bytes(b"png bytes")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(src, arcname="images/x.png")
    src.unlink()
    return path


def test_extract_relative_paths_and_the_glob_from_set(tmp_path):
    _archive(tmp_path / "arch" / "part_1.tgz")
    r = _tfxr(tmp_path, "tfxr.extract", "arch", "out", "--set", "glob=part_*.tgz")
    assert (tmp_path / "out" / "images" / "x.png").read_bytes() == b"png bytes"
    assert "All 1 archive(s) are extracted" in r.stdout
    again = _tfxr(tmp_path, "tfxr.data.extract", "arch", "out", "--glob", "part_*.tgz")   # the older name
    assert "already extracted" in again.stdout


@pytest.mark.parametrize("args,message", [
    ([], "the following arguments are required"),
    (["only-one"], "the following arguments are required: OUT_DIR"),
    (["missing.tar.gz", "out"], "missing.tar.gz"),
])
def test_extract_bad_values_are_one_line(tmp_path, args, message):
    _one_error_line(_tfxr(tmp_path, "tfxr.extract", *args, check=False), message)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- report
def test_report_set_and_json_relative(tmp_path):
    _tfxr(tmp_path, "tfxr.report", "--set", "model=tb_cnn", "--image-size", "32", "--json", "r.json")
    numbers = json.loads((tmp_path / "r.json").read_text())
    assert numbers["model"] == "tb_cnn" and numbers["image_size"] == 32
    assert numbers["networks"]["model"]["params"] > 0


@pytest.mark.parametrize("module", ["tfxr.report", "tfxr.models.report"])
@pytest.mark.parametrize("args,message", [
    (["--model", "resnet"], "model: unknown value 'resnet'"),
    (["--image-size", "4"], "--image-size: 4 is below the minimum 8"),
    (["--set", "steps=0"], "steps: 0 is below the minimum 1"),
])
def test_report_bad_values_are_one_line(tmp_path, module, args, message):
    _one_error_line(_tfxr(tmp_path, module, *args, check=False), message)


# --------------------------------------------------------------------------- gan sample | balance
@pytest.mark.parametrize("args,message", [
    (["sample", "--generator", "g.keras", "--out", "o", "--n", "0"], "n: 0 is below the minimum 1"),
    (["sample", "--out", "o"], "--generator is required"),
    (["sample", "--generator", "g.keras", "--out", "o", "--set", "seed=-2"], "seed: -2 is below the minimum 0"),
    (["sample", "--generator", "g.keras", "--out", "o"], "--generator g.keras: no such model file"),
    (["balance", "--data", "d", "--out", "o", "--num", "-1"], "num: -1 is below the minimum 0"),
    (["balance", "--data", "d", "--out", "o", "--class-value", "2"], "--class-value: unknown value 2"),
    (["balance", "--data", "d", "--out", "o", "--method", "smote"], "method: unknown value 'smote'"),
    (["balance", "--data", "d", "--out", "o", "--num", "3", "--target-ratio", "0.4"], "give one of them"),
    (["balance", "--out", "o"], "--data is required"),
])
def test_gan_bad_values_are_one_line(tmp_path, args, message):
    _one_error_line(_tfxr(tmp_path, "tfxr.gan", *args, check=False), message)
    assert not os.listdir(tmp_path)


# --------------------------------------------------------------------------- launch
def test_launch_takes_set_from_another_folder(tmp_path):
    r = _tfxr(tmp_path, "tfxr.launch", "--set", "np=1", "--print", "--", "tfxr.train", "--data", "d")
    assert r.stdout.split()[1:] == ["-m", "tfxr.train", "--data", "d"]
    _one_error_line(_tfxr(tmp_path, "tfxr.launch", "--print", "--", "tfxr.train", check=False), "--np is required")
    _one_error_line(_tfxr(tmp_path, "tfxr.launch", "--np", "2", "--set", "min_np=0", "--", "tfxr.train",
                          check=False), "min_np: 0 is below the minimum 1")


# --------------------------------------------------------------------------- the dispatcher
def test_run_command_dispatches_and_names_the_commands(capsys):
    seen = []
    commands = {"a": lambda argv: seen.append(("a", argv)), "b": lambda argv: 3}
    assert cli.run_command(["a", "--x", "1"], commands, "prog", "DOC") == 0 and seen == [("a", ["--x", "1"])]
    assert cli.run_command(["b"], commands, "prog", "DOC") == 3
    assert cli.run_command(["--help"], commands, "prog", "DOC") == 0 and capsys.readouterr().out == "DOC\n"
    assert cli.run_command(["c"], commands, "prog", "DOC") == 2
    assert capsys.readouterr().err == "tfxr: error: unknown command 'c' (allowed: a, b)\n"
    assert cli.run_command([], commands, "prog", "DOC") == 2
    assert "give a command first: a, b" in capsys.readouterr().err
    # with a default command, anything else is the default's options (evaluate's classifier)
    assert cli.run_command(["--model", "m"], commands, "prog", "DOC", default="a") == 0
    assert seen[-1] == ("a", ["--model", "m"])
    assert cli.run_command(["-h"], commands, "prog", "DOC", default="a") == 0 and capsys.readouterr().out == "DOC\n"
    assert cli.run_command(["c"], commands, "prog", "DOC", default="a") == 2     # a word is a command's name
    assert capsys.readouterr().err == "tfxr: error: unknown command 'c' (allowed: a, b)\n"


def test_run_command_takes_leading_options_and_hides_internal_commands(capsys):
    """``prog --out DIR CMD`` is ``prog CMD --out DIR`` (the benchmark's form); ``_x`` commands
    run but are never listed."""
    seen = []
    commands = {"a": lambda argv: seen.append(("a", argv)), "_w": lambda argv: seen.append(("_w", argv))}
    for argv in (["--out", "d", "a", "--x"], ["--out=d", "--x"], ["--out", "d", "--out", "e"], ["_w", "1"]):
        assert cli.run_command(argv, commands, "prog", "DOC", default="a", leading=("--out",)) == 0
    assert seen == [("a", ["--out", "d", "--x"]), ("a", ["--out=d", "--x"]), ("a", ["--out", "d", "--out", "e"]),
                    ("_w", ["1"])]
    assert cli.run_command(["--out", "d", "z"], commands, "prog", "DOC", leading=("--out",)) == 2
    assert capsys.readouterr().err == "tfxr: error: unknown command 'z' (allowed: a)\n"
    assert cli.run_command(["--out"], commands, "prog", "DOC", default="a", leading=("--out",)) == 2
    assert capsys.readouterr().err == "tfxr: error: --out needs a value\n"
