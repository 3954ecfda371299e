"""tfxr.launch.launch from a notebook: rank 0's lines arrive while the job runs."""
from __future__ import annotations

import subprocess

import pytest

from tests.conftest import REPO
from tfxr.launch import launch

pytestmark = pytest.mark.mpi


def test_stream_delivers_rank0_lines_while_the_job_runs(tmp_path):
    gate = tmp_path / "gate"
    seen = []

    def on_line(rank, stream_name, text):
        seen.append((rank, stream_name, text))
        if text == "rank 0 line 0":
            gate.touch()  # rank 0 blocks until this exists: the job ends only if we saw it live

    result = launch(2, ["tests.mpi_scripts.print_slowly", str(gate)], stream=True, on_line=on_line,
                    cwd=REPO, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    rank0 = [(s, t) for r, s, t in seen if r == 0]
    assert ("stderr", "rank 0 to stderr") in rank0  # its own pipe: no order against stdout
    assert [t for s, t in rank0 if s == "stdout"] == ["rank 0 line 0", "rank 0 line 1", "rank 0 line 2"]
    assert not [r for r, _, _ in seen if r == 1], "only rank 0 is shown"
    # The result holds every rank's output with OpenMPI's tags removed.
    assert "rank 1 line 2\n" in result.stdout and "rank 0 line 2\n" in result.stdout
    assert "rank 1 to stderr\n" in result.stderr and "<stdout>" not in result.stdout


def test_stream_prints_by_default_and_check_raises(tmp_path, capfd):
    with pytest.raises(subprocess.CalledProcessError) as failed:
        launch(2, ["tfxr.no_such_module"], stream=True, cwd=REPO, timeout=300, check=True)
    out, err = capfd.readouterr()
    assert "No module named tfxr.no_such_module" in err  # rank 0's error, printed live
    assert failed.value.returncode != 0


def test_stream_rejects_options_it_cannot_honour():
    with pytest.raises(TypeError, match="input"):
        launch(2, ["tfxr.train"], stream=True, input="x")
