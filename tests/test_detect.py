"""End to end on phantoms (300 at 128 px, boxes known): train the detector, then evaluate it beside the CAM
boxes of a classifier and random boxes; -np 2 gives the numbers of one process.

One training and one single-process evaluation (module fixtures) serve both tests."""
import json

import pytest

from tests.conftest import tfxr
from tfxr.train import main as train_main


@pytest.fixture(scope="module")
def phantoms(tmp_path_factory):
    out = tmp_path_factory.mktemp("det") / "ph"
    tfxr("tfxr.tfrecords", "write", "--source", "synthetic", "--num-images", "300", "--synthetic-task", "tb",
         "--prevalence", "0.5", "--image-size", "128", "--shards", "2", "--out", str(out), "--quiet")
    return out


@pytest.fixture(scope="module")
def trained(phantoms):
    run = phantoms.parent / "run"
    tfxr("tfxr.detect", "train", "--data", "ph", "--out", "run", "--epochs", "20", "--lr", "0.003",
         "--batch-size", "8", "--no-progress", "--seed", "0", cwd=phantoms.parent, timeout=3600)
    return run


@pytest.fixture(scope="module")
def evaluated(trained, phantoms):
    """One process's evaluation of the trained detector beside the CAM boxes of a (1-epoch)
    classifier and the random boxes: the one evaluation both tests read."""
    # in-process: the CAM classifier is not this file's subject
    assert train_main(["--model", "tb_cnn", "--data", str(phantoms), "--out", str(phantoms.parent / "cls"),
                       "--epochs", "1", "--no-progress"]) == 0
    return tfxr("tfxr.evaluate", "detection", "--detector", "run", "--data", "ph", "--cam-model", "cls",
                "--out", "e1", "--overlays", "3", "--bootstrap", "40", cwd=phantoms.parent, timeout=1800)


@pytest.mark.slow
def test_short_training_beats_the_random_floor(trained, phantoms, evaluated):
    history = json.loads((trained / "history.json").read_text())
    assert len(history) == 20 and history[-1]["train_loss"] < history[0]["train_loss"] / 10
    result = json.loads((phantoms.parent / "e1" / "detection.json").read_text())
    detector, floor = result["methods"]["detector"], result["methods"]["random boxes"]
    assert floor["coco"]["map_50"] < 0.05
    assert detector["coco"]["map_50"] > 0.4 > floor["coco"]["map_50"] + 0.3      # far above the floor
    assert detector["rsna"]["score"] > floor["rsna"]["score"] + 0.2
    assert detector["froc"]["mean_sensitivity"] > floor["froc"]["mean_sensitivity"] + 0.3
    out = evaluated.stdout
    assert "| detector |" in out and "| CAM boxes |" in out and "| random boxes |" in out and "0.149" in out
    low, high = detector["ci95"]["map_50"]                   # bootstrap over the test images
    assert 0.0 <= low < high <= 1.0 and floor["ci95"]["map_50"][1] < low   # the floor's CI lies below
    assert detector["ci95"]["resamples"] == 40
    assert "95 % confidence intervals: percentile bootstrap" in out
    assert len(list((phantoms.parent / "e1" / "overlays").glob("*.png"))) == 3


@pytest.mark.mpi
@pytest.mark.slow
def test_evaluation_with_cam_boxes_same_on_two_ranks(phantoms, evaluated):
    tfxr("tfxr.evaluate", "detection", "--detector", "run", "--data", "ph", "--cam-model", "cls",
         "--overlays", "0", "--bootstrap", "0", "--out", "e2", np=2, cwd=phantoms.parent, timeout=1800)
    one, two = (json.loads((phantoms.parent / e / "detection.json").read_text())["methods"] for e in ("e1", "e2"))
    assert set(one) == {"detector", "CAM boxes", "random boxes"}
    for method in one:
        for key in ("map_50", "map_50_95"):
            assert one[method]["coco"][key] == pytest.approx(two[method]["coco"][key], abs=1e-6)
        assert one[method]["rsna"]["score"] == pytest.approx(two[method]["rsna"]["score"], abs=1e-6)
    report = (phantoms.parent / "e1" / "report.md").read_text()
    assert "| CAM boxes |" in report and "HiResCAM" in report
