"""Attack tests: paths read from a manifest or a raw-image index never leave the data folder.

A hostile data folder names shards ``../outside/x.tfrecord``, an absolute path, or a
symbolic link to a file elsewhere; a raw-image index names ``/etc/hostname``.  Every
command that reads a data folder (train, verify, stats, evaluate, gan balance) must refuse
it with one line naming the manifest and the entry (exit 2), read nothing outside, and
``gan balance --method oversample`` must not delete the outside file (it did).
Commands run the way a user types them: relative paths, from the folder above the data.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys

import numpy as np
import pytest

from tests.conftest import REPO, run, save_classifier_run
from tfxr.data import records
from tfxr.errors import ManifestError

ENV = {"PYTHONPATH": str(REPO)}


def _tamper(data, name: str) -> None:
    """Rename the first train shard entry of data/manifest.json to ``name``."""
    path = data / "manifest.json"
    m = json.loads(path.read_text())
    m["splits"]["train"]["shards"][0]["file"] = name
    path.write_text(json.dumps(m))


@pytest.fixture
def hostile(synthetic_tfrec, tmp_path):
    """tmp/data (a copy) whose first train shard is listed as ../outside/<shard>, which exists."""
    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    first = json.loads((data / "manifest.json").read_text())["splits"]["train"]["shards"][0]["file"]
    (tmp_path / "outside").mkdir()
    victim = tmp_path / "outside" / first
    shutil.copyfile(data / first, victim)
    _tamper(data, f"../outside/{first}")
    return tmp_path, victim


def _cli(cwd, *args):
    return run([sys.executable, "-m", *args], cwd=cwd, check=False, env=ENV)


def _refused(r, entry="../outside/"):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("tfxr: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "manifest.json" in lines[0] and entry in lines[0] and "outside" in lines[0]


@pytest.mark.parametrize("command", [
    ["tfxr.tfrecords", "verify", "data"],
    ["tfxr.data.stats", "data"],
    ["tfxr.train", "--model", "tb_cnn", "--data", "data", "--out", "run", "--epochs", "1", "--no-progress"],
    ["tfxr.gan", "balance", "--data", "data", "--method", "oversample", "--out", "over", "--num", "4"],
])
def test_a_shard_outside_the_folder_is_refused(hostile, command):
    root, victim = hostile
    before = victim.read_bytes()
    _refused(_cli(root, *command))
    assert victim.read_bytes() == before                       # not deleted, not changed
    assert not (root / "run").exists() and not (root / "over").exists()


def test_evaluate_refuses_a_shard_outside_the_folder(hostile):
    from tfxr.models import build_model

    root, victim = hostile
    save_classifier_run(build_model("tb_cnn", 64, num_outputs=1), root / "mrun", "tb_cnn", 64, ["Tuberculosis"],
                        file="model.keras")
    _refused(_cli(root, "tfxr.evaluate", "--model", "mrun/model.keras", "--data", "data", "--split", "test",
                  "--out", "ev"))
    assert victim.exists() and not (root / "ev").exists()


def test_balance_oversample_can_no_longer_delete_a_file_outside_both_folders(hostile):
    """The reported attack: out/../outside/x is data/../outside/x, which was unlinked."""
    from tfxr.data.balance import Balancer

    root, victim = hostile
    with pytest.raises(ManifestError, match="resolves outside"):
        Balancer(str(root / "data"), str(root / "out"), method="oversample", num=4).run()
    assert victim.exists() and not (root / "out").exists()


def test_absolute_and_linked_shard_names_are_refused(synthetic_tfrec, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    first = json.loads((data / "manifest.json").read_text())["splits"]["train"]["shards"][0]["file"]
    _tamper(data, str(tmp_path / "elsewhere" / first))
    with pytest.raises(ManifestError, match="resolves outside"):
        records.read_manifest(str(data))
    _tamper(data, "/etc/hostname")
    with pytest.raises(ManifestError, match="'/etc/hostname' resolves outside"):
        records.read_manifest(str(data))
    # a shard that is a link to a file outside the folder: refused after following the link
    (tmp_path / "outside.tfrecord").write_bytes((data / first).read_bytes())
    (data / first).unlink()
    (data / first).symlink_to(tmp_path / "outside.tfrecord")
    _tamper(data, first)
    with pytest.raises(ManifestError, match="resolves outside"):
        records.read_manifest(str(data))
    # the check also holds for a manifest handed to the reader directly (not read from disk)
    m = json.loads((data / "manifest.json").read_text())
    with pytest.raises(ManifestError, match="resolves outside"):
        records.read_examples(str(data), "train", manifest=m)
    # an absolute path that does lie inside the folder is accepted
    (data / first).unlink()
    shutil.copyfile(tmp_path / "outside.tfrecord", data / first)
    _tamper(data, str((data / first).resolve()))
    assert records.read_manifest(str(data))["splits"]["train"]["shards"][0]["file"].endswith(first)


def test_raw_index_paths_outside_the_folders_are_refused(tmp_path):
    from tfxr.data.pipeline import DataConfig, build_dataset
    from tfxr.data.records import ShardWriter, build_manifest, plan_shards, write_manifest
    from tfxr.data.types import Item, Source

    out = tmp_path / "raw"
    out.mkdir()
    items = [Item(f"a{i}", f"p{i}", (float(i % 2),), np.full((10, 10), 10 * i, np.uint8)) for i in range(4)]
    plans = plan_shards({"train": items}, 1, seed=0, fmt="raw")
    with ShardWriter(str(out), 10, 1, fmt="raw") as w:
        results = [w.write(p) for p in plans]
    write_manifest(str(out), build_manifest(Source("t", ["F"], items), results, image_size=10, seed=0,
                                            fractions=(1, 0, 0), command=["t"], fmt="raw", source_rejects=[]))
    cfg = DataConfig(batch_size=2, deterministic=True)
    assert sum(len(x) for x, _ in build_dataset(str(out), "train", cfg, training=False)) == 4
    index = out / "train-00000-of-00001.csv"
    text = index.read_text().splitlines()
    first_path = text[1].split(",")[0]
    for hostile in ("/etc/hostname", os.path.join(str(out), "..", "x.png")):
        index.write_text("\n".join([text[0], text[1].replace(first_path, hostile), *text[2:]]) + "\n")
        with pytest.raises(ManifestError, match="outside"):
            build_dataset(str(out), "train", cfg, training=False)


def test_label_file_image_paths_outside_the_image_folder_are_refused(tmp_path):
    """A CheXpert-style label row naming ../../outside.jpg (which exists) is refused, naming the row."""
    from tfxr.data.sources.chexpert import CHEXPERT_COLUMNS, CheXpertReader

    images = tmp_path / "images"
    (images / "CheXpert-v1.0-small" / "train" / "patient00001" / "study1").mkdir(parents=True)
    (tmp_path / "outside.jpg").write_bytes(b"not for tfxr")
    labels = tmp_path / "train.csv"
    hostile = "CheXpert-v1.0-small/train/patient00001/study1/../../../../outside.jpg"
    labels.write_text(",".join(CHEXPERT_COLUMNS) + "\n"
                      + ",".join([hostile, "Frontal", "PA"] + ["1.0"] * (len(CHEXPERT_COLUMNS) - 3)) + "\n")
    with pytest.raises(ManifestError, match=re.escape(f"{labels}:2") + ".*resolves outside"):
        CheXpertReader(str(images), [str(labels)]).read()
