"""Horovod data parallelism under mpirun -np 2: exact averaged-gradient training."""
from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import REPO, mpirun_cmd, run

pytestmark = pytest.mark.mpi

# Same intra-op thread count in every process, so float reductions run in the same order and
# the 2-rank result can be compared with one process to 1e-4 (Adam amplifies reordering noise).
ONE_THREAD = {"TFXR_CPU_THREADS": "1"}


def _load(path):
    with np.load(path) as z:
        return [z[f"arr_{i}"] for i in range(len(z.files))]


def test_two_ranks_equal_single_process_on_union_of_batches(synthetic_tfrec, tmp_path):
    import sys

    script = str(REPO / "tests" / "mpi_scripts" / "step_check.py")
    d = run(mpirun_cmd(2, script, str(synthetic_tfrec), str(tmp_path), "dist"), env=ONE_THREAD)
    assert "world 2" in d.stdout
    u = run([sys.executable, script, str(synthetic_tfrec), str(tmp_path), "union"], env=ONE_THREAD)
    assert "world 1" in u.stdout
    r0, r1 = _load(tmp_path / "weights-dist-0.npz"), _load(tmp_path / "weights-dist-1.npz")
    ref = _load(tmp_path / "weights-union-0.npz")
    for a, b in zip(r0, r1):
        np.testing.assert_array_equal(a, b)                      # identical on both ranks
    moved = 0.0
    for a, c in zip(r0, ref):
        np.testing.assert_allclose(a, c, rtol=1e-4, atol=2e-6)   # = one process on both batches
        moved += float(np.abs(a).sum())
    assert moved > 0


# These paths are checked with SGD, whose update is linear in the gradient: Adam's normalised
# update turns rounding noise in near-zero gradients (fp16 compression, XLA's own reduction
# order) into full-size steps.
@pytest.mark.parametrize("opts,rtol,atol", [(["xla=1", "deterministic=0", "optimizer=sgd"], 1e-4, 2e-6),
                                            (["compression=fp16", "optimizer=sgd"], 1e-2, 1e-5)])
def test_xla_and_fp16_allreduce_paths(synthetic_tfrec, tmp_path, opts, rtol, atol):
    """XLA-compiled gradients + grouped allreduce, and fp16-compressed allreduce, under -np 2."""
    import sys

    script = str(REPO / "tests" / "mpi_scripts" / "step_check.py")
    same = [o for o in opts if not o.startswith("compression=")]   # the reference runs the same code path
    run(mpirun_cmd(2, script, str(synthetic_tfrec), str(tmp_path), "dist", *opts, "tag=x"), env=ONE_THREAD)
    run([sys.executable, script, str(synthetic_tfrec), str(tmp_path), "union", *same, "tag=x"], env=ONE_THREAD)
    r0, r1 = _load(tmp_path / "weights-distx-0.npz"), _load(tmp_path / "weights-distx-1.npz")
    ref = _load(tmp_path / "weights-unionx-0.npz")
    for a, b, c in zip(r0, r1, ref):
        np.testing.assert_array_equal(a, b)
        np.testing.assert_allclose(a, c, rtol=rtol, atol=atol)


def test_distributed_module_single_process_fallbacks():
    from tfxr import distributed as dist

    dist.init()
    assert dist.size() == 1 and dist.rank() == 0 and dist.is_chief()
    assert dist.allgather_object({"a": 1}) == [{"a": 1}]
    assert float(dist.allreduce_mean(3.0)) == 3.0


def test_horovodrun_gloo_launch(synthetic_tfrec, tmp_path):
    """`horovodrun -np 2` (Gloo controller, no mpirun) runs the same training entry point."""
    import shutil
    import sys

    hvdrun = shutil.which("horovodrun") or str(REPO / ".venv" / "bin" / "horovodrun")
    out = tmp_path / "run"
    r = run([hvdrun, "-np", "2", "-H", "localhost:2", "--gloo", sys.executable, "-m", "tfxr.train",
             "--model", "tb_cnn", "--data", str(synthetic_tfrec), "--out", str(out), "--epochs", "1",
             "--batch-size", "8", "--no-progress"])
    assert "2 worker(s)" in r.stdout + r.stderr
    assert (out / "history.json").exists() and (out / "best.keras").exists()
