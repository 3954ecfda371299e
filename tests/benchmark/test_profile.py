"""tfxr.benchmark profile: the per-op-type self-time summary (structure only, tiny model)."""
from __future__ import annotations

import json

import pytest

from tests.conftest import tfxr
from tfxr.benchmark.profile import op_type_summary, self_times


def test_self_time_subtracts_nested_ops_on_the_same_thread_only():
    events = [("t1", "Conv2D", 0, 100), ("t1", "Cast", 10, 30), ("t1", "Relu", 100, 20),
              ("t2", "Mul", 20, 50)]                      # another thread: overlaps, not nested
    assert sorted(self_times(events)) == [("Cast", 30), ("Conv2D", 70), ("Mul", 50), ("Relu", 20)]
    rows = op_type_summary(events + [("t1", "Relu", 200, 20)], steps=2)
    assert [r["op_type"] for r in rows] == ["Conv2D", "Mul", "Relu", "Cast"]
    relu = rows[2]
    assert relu["calls_per_step"] == 1 and relu["share"] == pytest.approx(40 / 190)
    assert sum(r["share"] for r in rows) == pytest.approx(1)


def test_profile_of_a_tiny_densenet_step_names_its_op_types(tmp_path):
    """Run as a user types it: the table and the JSON, every op type's share, the fused
    batch norm (tfxr.models.layers.FusedBatchNormalization) among the ops, no unfused one."""
    tfxr("tfxr.benchmark", "--out", "res", "profile", "--model", "densenet121", "--image-size", "32",
         "--batch-size", "2", "--steps", "1", "--warmup", "1", cwd=tmp_path, timeout=900)
    result = json.loads((tmp_path / "res" / "profile.json").read_text())
    ops = {r["op_type"]: r for r in result["ops"]}
    assert sum(r["share"] for r in ops.values()) == pytest.approx(1)
    assert any("Conv2D" in k for k in ops) and any("FusedBatchNorm" in k for k in ops)
    assert "SquaredDifference" not in ops                 # Keras 3's unfused moments are gone
    assert result["variant"]["model"] == "chexnet" and result["steps"] == 1
    assert "self ms/step" in (tmp_path / "res" / "profile.md").read_text()
    assert list((tmp_path / "res" / "profile-trace").rglob("*.xplane.pb"))
