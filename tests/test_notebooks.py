"""Every notebooks/*.ipynb runs top to bottom in a real Jupyter kernel (nbclient).

The kernel is the project's: ``make kernel`` registers the test's venv as kernel ``tfxr``
into a temporary prefix (which tests ``make kernel`` itself), and each notebook runs
with ``TFXR_NOTEBOOK_SMALL=1`` (the notebooks' first cell shrinks its sizes) in its own
temporary directory, which is also ``TFXR_NOTEBOOK_OUT``.  Any cell error fails the test.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbclient   # the dev extra installs both: a missing one must fail, not skip every notebook
import nbformat
import pytest

from tests.conftest import REPO

pytestmark = [pytest.mark.mpi, pytest.mark.slow]

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
VENV = Path(sys.prefix)


def make_kernel(prefix: Path) -> dict:
    """``make kernel`` into ``prefix``; returns the kernel.json it wrote."""
    r = subprocess.run(["make", "-s", "-C", str(REPO), "kernel", f"VENV={VENV}", f"KERNEL_PREFIX={prefix}"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    return json.loads((prefix / "share" / "jupyter" / "kernels" / "tfxr" / "kernel.json").read_text())


@pytest.fixture(scope="module")
def tfxr_kernel(tmp_path_factory) -> Path:
    """The kernel 'tfxr' registered by `make kernel`, visible through JUPYTER_PATH."""
    prefix = tmp_path_factory.mktemp("kernel")
    make_kernel(prefix)
    return prefix / "share" / "jupyter"


def test_make_kernel_registers_the_venv_idempotently(tmp_path):
    first = make_kernel(tmp_path)
    assert first["argv"][0] == str(VENV / "bin" / "python")
    assert first["argv"][1:] == ["-Xfrozen_modules=off", "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    assert first["display_name"].startswith("tfxr")
    assert make_kernel(tmp_path) == first  # re-running replaces the same spec
    listed = subprocess.run([str(VENV / "bin" / "jupyter"), "kernelspec", "list", "--json"],
                            env={"JUPYTER_PATH": str(tmp_path / "share" / "jupyter"), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, check=True)
    assert "tfxr" in json.loads(listed.stdout)["kernelspecs"]


def test_make_kernel_without_a_venv_says_what_to_do(tmp_path):
    r = subprocess.run(["make", "-s", "-C", str(REPO), "kernel", f"VENV={tmp_path / 'none'}",
                        f"KERNEL_PREFIX={tmp_path}"], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "run 'make install' first" in r.stderr


def test_every_notebook_is_collected():
    names = {p.name for p in NOTEBOOKS}
    assert {"tfxr_quickstart.ipynb", "scaling.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_every_notebook_reads_the_sizes_and_output_folder_the_test_sets(path):
    first_code = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code").source
    assert 'os.environ.get("TFXR_NOTEBOOK_SMALL")' in first_code
    assert 'os.environ.get("TFXR_NOTEBOOK_OUT")' in first_code, "results would go where nobody checks them"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tfxr_kernel, tmp_path, monkeypatch):
    notebook = nbformat.read(path, as_version=4)
    first_code = next(c for c in notebook.cells if c.cell_type == "code")
    assert "TFXR_NOTEBOOK_SMALL" in first_code.source, "the first code cell sets the (small) sizes"
    monkeypatch.setenv("JUPYTER_PATH", str(tfxr_kernel))
    monkeypatch.setenv("TFXR_NOTEBOOK_SMALL", "1")
    monkeypatch.setenv("TFXR_NOTEBOOK_OUT", str(tmp_path / "out"))
    monkeypatch.setenv("TFXR_NP", "2")
    monkeypatch.setenv("PYTHONPATH", str(REPO))  # this checkout's tfxr in the kernel and its children
    client = nbclient.NotebookClient(notebook, kernel_name="tfxr", timeout=900, allow_errors=False,
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError on the first failing cell
    outputs = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.output_type == "error"]
    for check in (_writes_to_notebook_out, *EXTRA_CHECKS.get(path.stem, ())):
        check(notebook, outputs, tmp_path / "out")


def _shows_a_png(notebook, outputs, out_dir):
    assert any("image/png" in o.get("data", {}) for o in outputs), "a figure is displayed"


def _writes_to_notebook_out(notebook, outputs, out_dir):
    assert list(out_dir.iterdir()), "results written to TFXR_NOTEBOOK_OUT"


def _streams_rank0_live(notebook, outputs, out_dir):
    for cell in notebook.cells:
        if cell.cell_type == "code" and "stream=True" in cell.source:  # rank 0 printed live
            streamed = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
            assert "tfxr: epoch 1" in streamed, streamed[-2000:]


#: what a given notebook must show beyond running without errors and writing to TFXR_NOTEBOOK_OUT
EXTRA_CHECKS = {
    "tfxr_quickstart": (_shows_a_png, _streams_rank0_live),
    "scaling": (_shows_a_png,),
}
