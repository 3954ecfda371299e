"""The one logger of tfxr: ``tfxr: ...`` lines on stderr, from rank 0 only by default.

    from tfxr import log
    log.info("wrote runs/x/report.md")            # tfxr: wrote runs/x/report.md   (rank 0)
    log.warning("bf16 is emulated on this CPU")   # tfxr: warning: bf16 is ...     (rank 0)
    log.error("data/x: no manifest.json")         # tfxr: error: data/x: ...       (every rank)

It is the standard :mod:`logging` logger named ``tfxr`` with tfxr's formatter, so a library
user can silence it (``logging.getLogger("tfxr").setLevel(logging.ERROR)``) or route it to
their own handlers.  Messages of ranks other than 0 are dropped, because every rank of a
data-parallel run says the same thing; errors are kept on every rank (a rank may fail alone),
except those all ranks share (``all_ranks=False``), and so is any call with ``all_ranks=True``.

The rank is the launcher's (Open MPI, MPICH/Hydra, PMIx, horovodrun, MVAPICH2, ``srun``),
read from the environment so that messages before Horovod starts are filtered too;
:func:`set_rank` makes it Horovod's once a run knows it (``tfxr.training.run`` does).
The handler writes to whatever ``sys.stderr`` is at the time (pytest's capture, a
notebook's redirected stream).
"""
from __future__ import annotations

import logging
import os
import sys

NAME = "tfxr"

#: launcher variables holding this process's rank (the first one set wins)
_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "HOROVOD_RANK", "MV2_COMM_WORLD_RANK")

_rank: int | None = None   # set by set_rank(): Horovod's rank once known


def set_rank(rank: int | None) -> None:
    """Use ``rank`` (Horovod's) from now on; None goes back to the launcher's environment."""
    global _rank
    _rank = rank


def process_rank() -> int:
    """This process's rank for logging: :func:`set_rank`'s, else the launcher's, else 0."""
    if _rank is not None:
        return _rank
    for var in _RANK_VARS:
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    if os.environ.get("SLURM_STEP_NUM_TASKS") and os.environ.get("SLURM_PROCID", "").isdigit():
        return int(os.environ["SLURM_PROCID"])
    return 0


class Formatter(logging.Formatter):
    """``tfxr: text``, ``tfxr: warning: text``, ``tfxr: error: text``."""

    PREFIX = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}

    def format(self, record: logging.LogRecord) -> str:
        return f"{NAME}: {self.PREFIX.get(record.levelno, '')}{record.getMessage()}"


class _RankZero(logging.Filter):
    """Pass rank 0's records, errors and ``all_ranks`` records."""

    def filter(self, record: logging.LogRecord) -> bool:
        everywhere = getattr(record, "all_ranks", record.levelno >= logging.ERROR)
        return everywhere or process_rank() == 0


class _StderrHandler(logging.StreamHandler):
    """A StreamHandler on the *current* ``sys.stderr`` (looked up at every line)."""

    def __init__(self):
        super().__init__(sys.stderr)

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):   # StreamHandler.__init__ assigns it; the property ignores it
        pass


def get_logger() -> logging.Logger:
    """The ``tfxr`` logger, configured once (one handler, no propagation to the root logger)."""
    logger = logging.getLogger(NAME)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(Formatter())
        handler.addFilter(_RankZero())
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    return logger


def info(message: str, all_ranks: bool = False) -> None:
    get_logger().info(message, extra={"all_ranks": all_ranks})


def warning(message: str, all_ranks: bool = False) -> None:
    get_logger().warning(message, extra={"all_ranks": all_ranks})


def error(message: str, all_ranks: bool = True) -> None:
    """One ``tfxr: error: ...`` line, on every rank that calls it; ``all_ranks=False`` for an
    error every rank raises alike (rank 0's decision, shared): then rank 0 alone says it."""
    get_logger().error(message, extra={"all_ranks": all_ranks})
