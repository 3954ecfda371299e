"""Bad data directories give one line naming the file and the problem (exit 2), never a
traceback: manifest values of the wrong type, a byte-flipped shard found mid-run (TFRecord's
CRC, DataLossError) in training, evaluation, GAN training and balancing, a shard entry that
is a directory, and the optional hash check before training."""
from __future__ import annotations

import json
import re
import shutil
import sys

import pytest

from tests.conftest import REPO, run
from tfxr.data import records
from tfxr.errors import ManifestError

ENV = {"PYTHONPATH": str(REPO)}


def _cli(cwd, *args):
    return run([sys.executable, "-m", *args], cwd=cwd, check=False, env=ENV)


def _one_error_line(r, *needles):
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("tfxr: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def _edit(data, fn):
    m = json.loads((data / "manifest.json").read_text())
    fn(m)
    (data / "manifest.json").write_text(json.dumps(m))


@pytest.mark.parametrize("edit,key", [
    (lambda m: m["splits"]["train"].update(count="12"), "splits.train.count"),
    (lambda m: m.update(image_size="64"), "image_size"),
    (lambda m: m.update(label_names="Tuberculosis"), "label_names"),
    (lambda m: m["splits"]["val"]["label_counts"].update(Extra=3), "splits.val.label_counts"),
    (lambda m: m["splits"]["test"]["shards"][0].update(count=-1), "splits.test.shards[0].count"),
    (lambda m: m["splits"].update(val=7), "splits.val"),
    (lambda m: m["splits"]["train"]["shards"].__setitem__(0, "x"), "splits.train.shards[0]"),
])
def test_manifest_values_of_the_wrong_type_name_the_key(synthetic_tfrec, tmp_path, edit, key):
    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    _edit(data, edit)
    with pytest.raises(ManifestError, match=r"manifest.json: damaged manifest.*" + re.escape(key)):
        records.read_manifest(str(data))


def test_manifest_with_a_wrong_type_is_one_line_from_the_cli(synthetic_tfrec, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    _edit(data, lambda m: m.update(image_size="64"))
    _one_error_line(_cli(tmp_path, "tfxr.data.stats", "data"), "image_size", "manifest.json")


def test_a_shard_entry_naming_a_directory_is_a_bad_shard_for_verify(synthetic_tfrec, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    (data / "adir").mkdir()
    _edit(data, lambda m: m["splits"]["val"]["shards"][0].update(file="adir"))
    r = _cli(tmp_path, "tfxr.tfrecords", "verify", "data")
    assert r.returncode == 3 and "adir: a directory" in r.stderr and "Traceback" not in r.stderr


@pytest.fixture(scope="module")
def flipped(synthetic_tfrec, tmp_path_factory):
    """A copy whose first train shard has one byte flipped inside a record (same size, same
    manifest): only TFRecord's CRC notices, mid-read."""
    root = tmp_path_factory.mktemp("flipped")
    data = root / "data"
    shutil.copytree(synthetic_tfrec, data)
    m = json.loads((data / "manifest.json").read_text())
    name = m["splits"]["train"]["shards"][0]["file"]
    raw = bytearray((data / name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (data / name).write_bytes(bytes(raw))
    return root, name


def test_a_flipped_shard_mid_training_names_the_shard(flipped):
    root, name = flipped
    r = _cli(root, "tfxr.train", "--model", "tb_cnn", "--data", "data", "--out", "run", "--epochs", "1",
             "--batch-size", "16", "--no-progress")
    _one_error_line(r, name, "damaged")


def test_verify_shards_option_refuses_before_training(flipped):
    root, name = flipped
    r = _cli(root, "tfxr.train", "--model", "tb_cnn", "--data", "data", "--out", "run2", "--epochs", "1",
             "--no-progress", "--set", "pipeline.verify_shards=true")
    _one_error_line(r, name, "sha256")
    assert not (root / "run2").exists()


def test_a_flipped_shard_in_gan_train_and_balance_names_the_shard(flipped):
    root, name = flipped
    _one_error_line(_cli(root, "tfxr.gan", "train", "--data", "data", "--out", "gan", "--epochs", "1",
                         "--batch-size", "4", "--set", "g_filters=4", "--set", "d_filters=4", "--no-progress"),
                    name, "damaged")
    _one_error_line(_cli(root, "tfxr.gan", "balance", "--data", "data", "--method", "oversample", "--out", "bal",
                         "--num", "3"), name, "damaged")
    assert not (root / "bal").exists()


def test_a_flipped_shard_in_evaluate_names_the_shard(synthetic_tfrec, tmp_path):
    from tfxr.models import build_model

    data = tmp_path / "data"
    shutil.copytree(synthetic_tfrec, data)
    name = json.loads((data / "manifest.json").read_text())["splits"]["test"]["shards"][1]["file"]
    raw = bytearray((data / name).read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (data / name).write_bytes(bytes(raw))
    build_model("tb_cnn", 64, num_outputs=1).save(tmp_path / "model.keras")
    _one_error_line(_cli(tmp_path, "tfxr.evaluate", "--model", "model.keras", "--trust-model-file", "--data", "data",
                         "--split", "test", "--out", "ev"), name, "damaged")
