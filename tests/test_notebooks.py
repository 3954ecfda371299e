"""The notebook's code cells run top to bottom (tiny sizes)."""
from __future__ import annotations

import json
import sys

import pytest

from tests.conftest import REPO, run

pytestmark = pytest.mark.mpi


def test_quickstart_notebook_runs(tmp_path):
    nb = json.loads((REPO / "notebooks" / "tfxr_quickstart.ipynb").read_text())
    assert nb["nbformat"] == 4
    code = "\n\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    script = tmp_path / "nb.py"
    script.write_text(code + "\nprint('MEAN_AUROC', res['mean_auroc'])\n")
    r = run([sys.executable, str(script)], env={"TFXR_NB_OUT": str(tmp_path / "out"), "TFXR_NB_QUICK": "1",
                                                "PYTHONPATH": str(REPO)})
    assert "MEAN_AUROC" in r.stdout
    assert (tmp_path / "out" / "run_mpi" / "eval-test" / "roc.png").exists()
    assert (tmp_path / "out" / "run_kernel" / "history.json").exists()
