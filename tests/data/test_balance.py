"""`gan balance` checks everything before it writes, never touches --data, and writes its
shards through the one shard writer (sizes and sha256 in the manifest, checkable)."""
from __future__ import annotations

import hashlib
import os
import sys

import keras
import numpy as np
import pytest

from tests.conftest import REPO, run
from tfxr.data import records
from tfxr.data.balance import Balancer
from tfxr.errors import ConfigError


def _hashes(folder) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _generator(path, size=64, channels=1):
    """A tiny noise -> (size, size, channels) tanh model, the shape of a tfxr DCGAN generator
    (a file of no tfxr run: the tests pass trust_model_file=True so Keras loads it, safe mode on)."""
    noise = keras.Input((8,))
    x = keras.layers.Dense(size * size * channels, activation="tanh")(noise)
    keras.Model(noise, keras.layers.Reshape((size, size, channels))(x)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def generators(tmp_path_factory):
    from tfxr.models import build_model

    d = tmp_path_factory.mktemp("generators")
    build_model("tb_cnn", 64, num_outputs=1).save(d / "classifier.keras")
    return {"ok": _generator(d / "ok.keras"), "small": _generator(d / "small.keras", size=28),
            "rgb": _generator(d / "rgb.keras", channels=3), "classifier": str(d / "classifier.keras")}


@pytest.mark.parametrize("kind,message", [("small", "28x28-px images"), ("rgb", "grey"),
                                          ("classifier", "not a tfxr DCGAN generator")])
def test_a_wrong_generator_is_refused_before_anything_is_written(synthetic_tfrec, tmp_path, generators,
                                                                  kind, message):
    out = tmp_path / "bal"
    with pytest.raises(ConfigError, match=message):
        Balancer(str(synthetic_tfrec), str(out), generator=generators[kind], trust_model_file=True, num=5).run()
    assert not out.exists()


def test_out_that_is_data_through_a_link_is_refused_and_data_untouched(synthetic_tfrec, tmp_path, generators):
    before = _hashes(synthetic_tfrec)
    link = tmp_path / "same"
    link.symlink_to(synthetic_tfrec)
    for out in (link, synthetic_tfrec / "inside"):
        with pytest.raises(ConfigError, match="--out"):
            Balancer(str(synthetic_tfrec), str(out), generator=generators["ok"], trust_model_file=True, num=5).run()
    assert _hashes(synthetic_tfrec) == before and not (synthetic_tfrec / "inside").exists()


def test_existing_out_needs_overwrite_and_other_files_survive(synthetic_tfrec, tmp_path, generators):
    out = tmp_path / "bal"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty .*--overwrite"):
        Balancer(str(synthetic_tfrec), str(out), generator=generators["ok"], trust_model_file=True, num=5)
    assert os.listdir(out) == ["notes.txt"]
    m = Balancer(str(synthetic_tfrec), str(out), generator=generators["ok"], trust_model_file=True, num=5, overwrite=True).run()
    assert (out / "notes.txt").read_text() == "mine"            # not created by balance: kept
    added = [s for s in m["splits"]["train"]["shards"] if s.get("synthetic")]
    assert sum(s["count"] for s in added) == 5
    assert all(s["bytes"] == (out / s["file"]).stat().st_size for s in added)   # the one writer's entry
    written = records.read_manifest(str(out))
    assert records.shard_problems(str(out), written, hashes=True) == []
    shard = out / added[0]["file"]
    shard.write_bytes(shard.read_bytes()[:-5])                 # truncate an added shard
    with pytest.raises(records.ManifestError, match=added[0]["file"]):
        records.check_shards(str(out), written)
    r = run([sys.executable, "-m", "tfxr.tfrecords", "verify", "bal"], cwd=tmp_path, check=False,
            env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 3 and added[0]["file"] in r.stderr and "sha256 differs" in r.stderr


def test_class_value_must_be_a_label_value(synthetic_tfrec, tmp_path, generators):
    with pytest.raises(ConfigError, match="--class-value 2"):
        Balancer(str(synthetic_tfrec), str(tmp_path / "b"), generator=generators["ok"], trust_model_file=True, value=2, num=5)
    r = run([sys.executable, "-m", "tfxr.gan", "balance", "--data", str(synthetic_tfrec), "--generator",
             generators["ok"], "--out", "b", "--class-value", "2", "--num", "5"], cwd=tmp_path, check=False,
            env={"PYTHONPATH": str(REPO)})
    assert r.returncode == 2 and "--class-value: unknown value 2" in r.stderr and not (tmp_path / "b").exists()


def test_a_failure_after_writing_began_removes_only_what_this_run_created(synthetic_tfrec, tmp_path,
                                                                           generators, monkeypatch):
    out = tmp_path / "bal"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    b = Balancer(str(synthetic_tfrec), str(out), generator=generators["ok"], trust_model_file=True, num=6, shards=3, overwrite=True)

    def dying(path, recs):
        raise OSError(28, "No space left on device", path)
    monkeypatch.setattr("tfxr.data.balance.write_shard", dying)
    with pytest.raises(OSError):
        b.run()
    assert sorted(os.listdir(out)) == ["keep.txt"]
    assert np.all([p.exists() for p in synthetic_tfrec.iterdir()])
