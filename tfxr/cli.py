"""The one wrapper every ``python -m tfxr.X`` entry point runs in.

Exit codes (documented in the README, the same for every command):

====  =============================================================================
0     success
1     an unexpected failure (a bug in tfxr or the environment): Python's traceback
2     bad input or options: one line ``tfxr: error: ...`` naming the file or option
3     the work ran but its result is not acceptable (e.g. too many rejected images,
      a verification that found damaged shards)
====  =============================================================================
"""
from __future__ import annotations

from typing import Callable

from tfxr import log
from tfxr.errors import RejectedResult, TfxrError

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_USAGE = TfxrError.exit_code            # 2
EXIT_REJECTED = RejectedResult.exit_code    # 3


def error(message: str, all_ranks: bool = True) -> None:
    """One ``tfxr: error: ...`` line on stderr (:func:`tfxr.log.error`)."""
    log.error(message, all_ranks=all_ranks)


def run_main(body: Callable[[], int | None]) -> int:
    """Run a command's body: TfxrError -> one line and its exit code (2, or 3 for a rejected
    result); Horovod shut down at the end."""
    try:
        code = body()
        return EXIT_OK if code is None else int(code)
    except TfxrError as e:
        error(str(e), all_ranks=not e.shared)   # a shared error: one line from rank 0, not one per rank
        return e.exit_code
    except KeyboardInterrupt:
        error("interrupted")
        return 130
    finally:
        from tfxr import distributed

        distributed.shutdown()
