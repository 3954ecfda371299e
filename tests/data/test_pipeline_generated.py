"""Generated (GAN) records: in training as written, left out or mixed; never in val/test."""
from __future__ import annotations

import json
import shutil

import pytest

from tfxr.data.pipeline import DataConfig, build_dataset
from tests.conftest import save_generator_run
from tfxr.errors import ManifestError


@pytest.fixture(scope="module")
def balanced(synthetic_tfrec, tmp_path_factory):
    from tfxr.data.balance import Balancer
    from tfxr.models.dcgan import build_generator

    tmp = tmp_path_factory.mktemp("balanced")
    # random weights: only the plumbing is tested
    gen = save_generator_run(build_generator(64, base_filters=4), tmp / "gan", 64, g_filters=4)
    out = tmp / "data"
    Balancer(str(synthetic_tfrec), str(out), generator=str(gen), num=40, shards=2).run()
    return out


def _ids(data, split, training, **cfg):
    ds = build_dataset(str(data), split, DataConfig(batch_size=8, deterministic=True, **cfg),
                       training=training, with_meta=True)
    return [i.decode() for b in ds for i in b["image_id"].numpy()]


def test_training_uses_synthetic_shards_as_written_or_not_at_all(balanced):
    train = json.loads((balanced / "manifest.json").read_text())["splits"]["train"]
    every = set(_ids(balanced, "train", False))          # evaluation order: each record once
    assert not any(i.startswith("generated-") for i in every)
    seen = _ids(balanced, "train", True, generated_fraction=-1.0)
    assert any(i.startswith("generated-") for i in seen)
    assert len(seen) == (train["count"] // 8) * 8
    assert not any(i.startswith("generated-") for i in _ids(balanced, "train", True, generated_fraction=0.0))


def test_mixing_fraction(balanced):
    ds = build_dataset(str(balanced), "train", DataConfig(batch_size=50, deterministic=True,
                                                         generated_fraction=0.5),
                       training=True, with_meta=True, repeat_steps=8)
    ids = [i.decode() for b in ds for i in b["image_id"].numpy()]
    share = sum(i.startswith("generated-") for i in ids) / len(ids)
    assert 0.4 < share < 0.6, share


@pytest.mark.parametrize("split", ["val", "test"])
def test_never_in_validation_or_test(balanced, split, tmp_path):
    assert not any(i.startswith("generated-") for i in _ids(balanced, split, False))
    # a generated shard smuggled into an evaluation split without its flag: dropped record by record
    copy = tmp_path / "data"
    shutil.copytree(balanced, copy)
    m = json.loads((copy / "manifest.json").read_text())
    synthetic = [s for s in m["splits"]["train"]["shards"] if s.get("synthetic")][0]
    m["splits"][split]["shards"].append({k: v for k, v in synthetic.items() if k != "synthetic"})
    (copy / "manifest.json").write_text(json.dumps(m))
    ids = _ids(copy, split, False)
    assert ids and not any(i.startswith("generated-") for i in ids)
    # ... and flagged in the manifest outside train: a clear error
    m["splits"][split]["shards"][-1]["synthetic"] = True
    (copy / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(ManifestError, match=f"lists generated .* shards in the '{split}' split"):
        _ids(copy, split, False)
