"""The steps ``python -m tfxr.benchmark`` times (tfxr/benchmark/workers.py), here the detector's."""
from __future__ import annotations

import pytest

from tests.benchmark.helpers import check_result
from tests.conftest import tfxr
from tfxr.benchmark.analysis import Variant


@pytest.mark.slow
def test_detector_step_beside_its_two_process_bound(tmp_path):
    """The detector's training step (tfxr.detect's DetectorStep, random images and boxes in
    memory; 64 px, one step per window): one process on all cores, one core, two independent
    one-core processes (the bound) and mpirun -np 2, and the ranks' ratio to the bound.  The
    suite's detector_256 section is this plan at the trainer's 256 px and batch 8."""
    from tfxr.benchmark.suites import SCALED, suite_plan

    assert suite_plan("base")["detector_256"] == [Variant(model="detector", image_size=256, batch_size=8)]
    assert SCALED["detector_256"] == [()]
    bad = tfxr("tfxr.benchmark", "--out", "res", "train", "--model", "detector", "--image-size", "100",
               cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("tfxr: error: image size 100: the detector needs")
    tfxr("tfxr.benchmark", "--out", "res", "train", "--model", "detector", "--image-size", "64", "--batch-size", "2",
         "--steps", "1", "--repeats", "3", "--warmup", "1", "--np", "1,2", "--gemm-size", "0", cwd=tmp_path,
         timeout=1800)
    result = check_result(tmp_path / "res", "train")
    ms = result["measurements"]
    assert [m["variant"]["layout"] for m in ms] == ["all-cores", "one-core", "independent", "ranks"]
    for m in ms:
        assert m["variant"]["model"] == "detector" and m["flops_per_image"] > 0
        assert len(m["images_per_s"]["repeats"]) == 3 and m["images_per_s"]["min"] > 0
    (row,) = result["scaling"]
    assert row["vs_bound"] == pytest.approx(ms[3]["images_per_s"]["median"] / ms[2]["images_per_s"]["median"])
