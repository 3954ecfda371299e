"""``python -m tfxr.localize`` end to end on the phantoms, and its input errors."""
from __future__ import annotations

import json

from tests.conftest import tfxr
from tests.evaluation.conftest import phantom_data, phantom_model  # noqa: F401 - fixtures


def test_localize_writes_report_json_and_overlays(phantom_data, phantom_model, tmp_path):  # noqa: F811
    out = tmp_path / "loc"
    r = tfxr("tfxr.localize", "--model", str(phantom_model), "--data", str(phantom_data), "--out", str(out),
             "--overlays", "2")
    report = (out / "report.md").read_text()
    assert "T=0.1" in report and "Wang 0.9931" in report and "pointing game" in report
    assert "Average false positives per image (AFP)" in report and "Wang 0.3506" in report
    assert "chosen per finding on `val`" in report and "lung fields" in report
    result = json.loads((out / "localization.json").read_text())
    assert set(result["findings"]) == {"Nodule", "Consolidation", "Effusion", "Cardiomegaly"}
    assert result["boxes"] == len(result["boxes_scored"]) and result["layer"] == "conv3_64"
    assert all(0.1 <= t <= 0.9 for t in result["thresholds"].values())
    pngs = sorted((out / "overlays").glob("*.png"))
    assert pngs and pngs[0].read_bytes()[:4] == b"\x89PNG"
    assert "Accuracy at T(IoBB)" in r.stdout


def test_a_fixed_box_threshold_needs_no_threshold_split(phantom_data, phantom_model, tmp_path):  # noqa: F811
    from tfxr.localize import main

    out = tmp_path / "fixed"
    assert main(["--model", str(phantom_model), "--data", str(phantom_data), "--out", str(out), "--overlays", "0",
                 "--threshold-split", "test", "--box-threshold", "0.5"]) == 0
    result = json.loads((out / "localization.json").read_text())
    assert set(result["thresholds"].values()) == {0.5} and result["threshold_split"] == ""
    assert "fixed in advance at 0.5" in (out / "report.md").read_text()
    assert all(set(row["afp"]) == {f"fp_{t}" for t in (0.1, 0.25, 0.5, 0.75, 0.9)}
               for row in result["findings"].values())


def test_localize_refuses_thresholds_on_the_scored_split(phantom_data, tmp_path, capsys):  # noqa: F811
    from tfxr.localize import main

    assert main(["--model", str(tmp_path), "--data", str(phantom_data), "--split", "val",
                 "--threshold-split", "val"]) == 2
    assert "another split than the scored one" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--data", str(phantom_data), "--cam", "cam++"]) == 2
    err = capsys.readouterr().err
    assert "unknown value 'cam++'" in err and "Traceback" not in err
    assert main(["--model", str(tmp_path), "--data", str(phantom_data)]) == 2
    assert "no best.keras or final.keras" in capsys.readouterr().err
