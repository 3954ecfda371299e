"""tfxr.timeline on a real Horovod timeline from a short 2-rank tfxr.train run (--timeline FILE)."""
from __future__ import annotations

import json

import pytest

from tests.conftest import tfxr
from tfxr.errors import ConfigError
from tfxr.timeline import format_summary, read_events, summarize

STEPS = 3
TB_CNN_GRADIENTS = 8          # 4 layers x (kernel, bias)


@pytest.fixture(scope="module")
def timeline(synthetic_tfrec, tmp_path_factory):
    work = tmp_path_factory.mktemp("timeline")
    tfxr("tfxr.train", "--data", str(synthetic_tfrec), "--out", "run", "--epochs", "1", "--batch-size", "8",
         "--val-split", "", "--no-progress", "--set", f"steps_per_epoch={STEPS}", "--timeline", "tl.json",
         np=2, cwd=work)
    return work / "tl.json"      # relative to where the command ran, like every other path


@pytest.mark.mpi
def test_summary_of_a_real_two_rank_timeline(timeline):
    s = summarize(str(timeline))
    assert s["steps"] == STEPS                              # each gradient allreduced once per step
    assert s["tensors"] == TB_CNN_GRADIENTS + 1             # + the epoch's loss mean
    assert s["cycles"] > 0 and s["allreduce_ms_per_step"] > 0
    assert 0 <= s["network_ms_per_step"] <= s["allreduce_ms_per_step"]
    assert 0 <= s["waiting_ms_per_step"] <= s["negotiation_ms_per_step"]
    fused = s["tensors_per_cycle"]
    assert 1 <= fused["mean"] <= fused["max"] <= TB_CNN_GRADIENTS + 1
    assert s["other_ops"]["BROADCAST"] > 0                  # the start-up broadcast of the weights
    text = format_summary(s)
    assert f"{STEPS} step(s)" in text and "tensors fused per cycle" in text


@pytest.mark.mpi
def test_a_timeline_cut_short_is_read_up_to_its_last_event(timeline, tmp_path):
    text = timeline.read_text()
    whole = read_events(str(timeline))
    cut = tmp_path / "cut.json"
    cut.write_text(text[:len(text) // 2].rstrip().rstrip("]"))   # a killed writer: no closing bracket
    part = read_events(str(cut))
    assert 0 < len(part) < len(whole) and part == whole[:len(part)]


def test_bad_timelines_are_one_line_errors(tmp_path):
    (tmp_path / "not.json").write_text("hello")
    (tmp_path / "empty.json").write_text(json.dumps([{"ph": "i", "name": "CYCLE_START", "ts": 1}]))
    for name, message in [("not.json", "not a Horovod timeline"), ("empty.json", "no Horovod operations"),
                          ("missing.json", "cannot read the timeline")]:
        with pytest.raises(ConfigError, match=message):
            summarize(str(tmp_path / name))
