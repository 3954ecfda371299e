"""``python -m tfxr.data.stats``: prevalence, origins and patient overlap read from the shards;
clear errors for what it cannot do."""
from __future__ import annotations

import json

import numpy as np
import pytest

from tests.conftest import tfxr
from tfxr.data.stats import main as stats_main
from tfxr.data.records import ShardWriter, build_manifest, plan_shards, read_manifest, write_manifest
from tfxr.data.types import Item, Source


def _pixels(value: int):
    return np.full((10, 10), value, np.uint8)


def _raw_index(out, leak: bool):
    """A raw-image index (CSV per split); with ``leak`` patient p0 is in train and test."""
    out.mkdir()
    train = [Item(f"a{i}", f"p{i}", (float(i % 2),), _pixels(i)) for i in range(4)]
    test = [Item("b0", "p0" if leak else "q0", (1.0,), _pixels(9), origin="phantom")]
    items = train + test
    plans = plan_shards({"train": train, "test": test}, 1, seed=0, fmt="raw")
    with ShardWriter(str(out), 10, 1, fmt="raw") as writer:
        results = [writer.write(p) for p in plans]
    write_manifest(str(out), build_manifest(Source("t", ["Finding"], items), results, image_size=10, seed=0,
                                            fractions=(0.8, 0, 0.2), command=["t"], fmt="raw",
                                            source_rejects=[]))
    return out


def test_stats_prints_prevalence_origins_and_zero_overlap(synthetic_tfrec, tmp_path):
    r = tfxr("tfxr.data.stats", str(synthetic_tfrec), "--json", str(tmp_path / "s.json"), "--grid",
             str(tmp_path / "grid.png"))
    from PIL import Image

    with Image.open(tmp_path / "grid.png") as g:
        assert g.format == "PNG" and g.size[0] > 600 and g.size[1] > 300
    assert "Tuberculosis" in r.stdout and "patient overlap: test&train 0, test&val 0, train&val 0" in r.stdout
    m = read_manifest(str(synthetic_tfrec))
    phantom_row = next(line for line in r.stdout.splitlines() if line.startswith("phantom images"))
    assert phantom_row.split()[2:] == [str(m["splits"][s]["count"]) for s in ("train", "val", "test")]
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["prevalence"]["train"]["Tuberculosis"] == pytest.approx(
        m["splits"]["train"]["label_counts"]["Tuberculosis"] / m["splits"]["train"]["count"])
    assert s["origins"]["val"] == {"real": 0, "phantom": m["splits"]["val"]["count"], "generated": 0}


def test_patient_in_two_splits_exits_3(tmp_path, capsys):
    assert stats_main([str(_raw_index(tmp_path / "ok", leak=False))]) == 0
    assert stats_main([str(_raw_index(tmp_path / "leak", leak=True))]) == 3
    out = capsys.readouterr().out
    assert "patient overlap: test&train 1" in out
    assert "real images" in out and "phantom images" in out


def test_grid_on_a_raw_index_is_a_clear_error(tmp_path, capsys):
    index = _raw_index(tmp_path / "raw", leak=False)
    assert stats_main([str(index), "--grid", str(tmp_path / "g.png")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("tfxr: error: --grid:") and "raw-image index" in err and "Traceback" not in err
    assert not (tmp_path / "g.png").exists()


def test_missing_shard_or_manifest_is_a_clear_error(tmp_path, capsys):
    assert stats_main([str(tmp_path)]) == 2
    assert "no manifest" in capsys.readouterr().err
    index = _raw_index(tmp_path / "raw", leak=False)
    shard = read_manifest(str(index))["splits"]["train"]["shards"][0]["file"]
    (index / shard).unlink()
    assert stats_main([str(index)]) == 2
    assert "shard listed in the manifest is missing" in capsys.readouterr().err
