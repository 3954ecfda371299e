"""The one reader shape: every data set is a Reader subclass in READERS, reachable as
``tfrecords write --source NAME``, and the README's data table says what each reader says."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.conftest import REPO, tfxr
from tfxr.configs import SOURCES, WriteConfig
from tfxr.data.sources import READERS, Reader


def _readme_rows() -> dict[str, list[str]]:
    text = (REPO / "README.md").read_text()
    start = text.index("| `--source` | labels |")
    rows = {}
    for line in text[start:].splitlines()[2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip().replace("\\|", "|") for c in line.strip().strip("|").split(" | ")]
        for name in cells[0].split("`")[1::2]:     # `phantoms` (alias `synthetic`): both names
            rows[name] = cells
    return rows


def test_every_reader_is_a_source_choice():
    options = {f.name for f in dataclasses.fields(WriteConfig)}
    for name, reader in READERS.items():
        assert issubclass(reader, Reader) and reader.name == name and name in SOURCES
        # every option a reader takes is a write option
        assert set(reader.required) <= set(reader.options) <= options, name


@pytest.mark.parametrize("name", sorted(READERS))
def test_readme_table_row_is_the_readers_own_description(name):
    reader, row = READERS[name], _readme_rows()[name]
    header = ["`--source`", "labels", "uncertainty", "patient key", "official split", "boxes", "views"]
    facts = dict(zip(header, row))
    assert facts["patient key"] == (reader.patient_key or "-")
    assert facts["official split"] == (reader.official_split or "-")
    assert facts["boxes"] == (reader.boxes or "-")
    assert facts["views"] == (reader.views or "-")
    assert Path(REPO, row[-1].split("`")[1]).is_file()      # the test it names exists


def test_a_missing_required_option_is_named(tmp_path):
    r = tfxr("tfxr.tfrecords", "write", "--source", "mimic-cxr-jpg", "--images", "x", "--labels", "y.csv",
             "--out", "out", cwd=tmp_path, check=False)
    assert r.returncode == 2
    assert r.stderr.strip() == "tfxr: error: --source mimic-cxr-jpg needs --mimic-split and --mimic-metadata"
    assert not (tmp_path / "out").exists()
