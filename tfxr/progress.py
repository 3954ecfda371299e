"""Progress output for long work: a tqdm bar on rank 0, nothing elsewhere."""
from __future__ import annotations

import sys

from tqdm import tqdm


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "img"):
    """A tqdm bar on the current stderr when ``enabled`` and stderr is a terminal; otherwise
    an object with the same ``update``/``close`` that writes nothing."""
    if not enabled:
        return _Silent()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True,
                mininterval=1.0, disable=None)
