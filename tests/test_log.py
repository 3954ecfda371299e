"""tfxr.log: one logger, `tfxr: ...` lines on stderr, rank 0 only except errors."""
from __future__ import annotations

import logging
import sys

import pytest

from tests.conftest import run
from tfxr import log


@pytest.fixture(autouse=True)
def _rank_from_environment():
    log.set_rank(None)
    yield
    log.set_rank(None)


def test_lines_and_prefixes(capsys):
    log.info("wrote x/report.md")
    log.warning("bf16 is emulated")
    log.error("x: no manifest.json")
    assert capsys.readouterr().err.splitlines() == [
        "tfxr: wrote x/report.md", "tfxr: warning: bf16 is emulated", "tfxr: error: x: no manifest.json"]


def test_other_ranks_keep_errors_and_all_rank_lines_only(capsys, monkeypatch):
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "1")
    assert log.process_rank() == 1
    log.info("epoch 1: loss 0.5")
    log.warning("slow")
    log.info("rank 1 here", all_ranks=True)
    log.error("rank 1 failed")
    log.error("every rank failed alike", all_ranks=False)      # rank 0 says it
    assert capsys.readouterr().err.splitlines() == ["tfxr: rank 1 here", "tfxr: error: rank 1 failed"]
    log.set_rank(0)                                   # Horovod's rank wins over the environment
    log.info("now rank 0")
    assert capsys.readouterr().err == "tfxr: now rank 0\n"


def test_it_is_the_standard_logger_and_can_be_silenced(capsys):
    logger = logging.getLogger("tfxr")
    assert log.get_logger() is logger and not logger.propagate
    assert len(logger.handlers) == 1 and log.get_logger().handlers == logger.handlers   # configured once
    logger.setLevel(logging.ERROR)
    try:
        log.info("hidden")
        log.error("shown")
    finally:
        logger.setLevel(logging.INFO)
    assert capsys.readouterr().err == "tfxr: error: shown\n"


def test_one_line_per_rank_zero_message_under_two_launched_ranks():
    code = "from tfxr import log; log.info('hello'); log.error('bad')"
    outs = [run([sys.executable, "-c", code], env={"OMPI_COMM_WORLD_RANK": str(r)}).stderr for r in (0, 1)]
    assert outs == ["tfxr: hello\ntfxr: error: bad\n", "tfxr: error: bad\n"]
