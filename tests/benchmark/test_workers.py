"""The steps ``python -m tfxr.benchmark`` times (tfxr/benchmark/workers.py): the detector's and
the DCGAN's, each measured by ``train`` in one process and run under ``mpirun -np 2``.

The layouts around a model's step (one-core, the independent bound, the ranks and their
ratio to the bound) are the same code for every model: test_main.py's
test_train_smoke_with_scaling_baselines and test_suites.py's test_suite_smoke run them all
(tb_cnn); here each step need only show that it runs alone and on two ranks."""
from __future__ import annotations

import pytest

from tests.benchmark.helpers import check_result
from tests.conftest import tfxr
from tfxr.benchmark.analysis import Variant
from tfxr.benchmark.runner import Timing, run_one, variant_command, variant_env


def check_step_alone_and_on_two_ranks(tmp_path, monkeypatch, model: str, size: int, batch: int) -> None:
    """``train --model MODEL --np 1`` (one process on all cores: one measurement, no scaling),
    then the benchmark's ranks command (tfxr's mpirun line, one core per rank) of that step,
    started by the runner from this test in ``tmp_path``."""
    tfxr("tfxr.benchmark", "--out", "res", "train", "--model", model, "--image-size", str(size),
         "--batch-size", str(batch), "--steps", "1", "--repeats", "3", "--warmup", "1", "--np", "1",
         "--gemm-size", "0", cwd=tmp_path, timeout=1800)
    result = check_result(tmp_path / "res", "train")
    (alone,) = result["measurements"]
    assert alone["variant"]["layout"] == "all-cores" and alone["variant"]["model"] == model
    assert alone["flops_per_image"] > 0 and 0 < alone["flop_fraction"] <= 1
    assert len(alone["images_per_s"]["repeats"]) == 3 and alone["images_per_s"]["min"] > 0
    assert result["scaling"] == []
    monkeypatch.chdir(tmp_path)
    ranks = Variant(model=model, image_size=size, batch_size=batch, layout="ranks", workers=2)
    timing = Timing(steps=1, repeats=3, warmup=1, timeout_s=1800)
    cmd = variant_command(ranks, timing, "")
    assert cmd[0] == "mpirun" and cmd[cmd.index("-np") + 1] == "2"
    two = run_one(cmd, variant_env(ranks), timing)
    assert two["workers"] == 2 and len(two["rates"]) == 3 and min(two["rates"]) > 0
    assert two["flops_per_image"] == alone["flops_per_image"]


@pytest.mark.slow
def test_detector_step_alone_and_on_two_ranks(tmp_path, monkeypatch):
    """The detector's training step (tfxr.detect's DetectorStep, random images and boxes in
    memory; 64 px, one step per window).  The suite's detector_256 section is this step at the
    trainer's 256 px and batch 8, with the scaling baselines."""
    from tfxr.benchmark.suites import SCALED, suite_plan

    assert suite_plan("base")["detector_256"] == [Variant(model="detector", image_size=256, batch_size=8)]
    assert SCALED["detector_256"] == [()]
    bad = tfxr("tfxr.benchmark", "--out", "res", "train", "--model", "detector", "--image-size", "100",
               cwd=tmp_path, check=False)
    assert bad.returncode == 2 and bad.stderr.startswith("tfxr: error: image size 100: the detector needs")
    check_step_alone_and_on_two_ranks(tmp_path, monkeypatch, "detector", 64, 2)


@pytest.mark.slow
def test_dcgan_step_alone_and_on_two_ranks(tmp_path, monkeypatch):
    """The DCGAN's training step (tfxr.gan train's GanTrainer, random images in memory; 64 px).
    The suite's dcgan_64 section is this step at batch 32, with the scaling baselines; its
    target ("DCGAN 64 px: best -np 2 / independent bound") is computed in
    test_analysis.py's test_suite_targets_from_fake_sections."""
    from tfxr.benchmark.suites import SCALED, suite_plan

    assert suite_plan("base")["dcgan_64"] == [Variant(model="dcgan", image_size=64, batch_size=32)]
    assert SCALED["dcgan_64"] == [()]
    check_step_alone_and_on_two_ranks(tmp_path, monkeypatch, "dcgan", 64, 8)
