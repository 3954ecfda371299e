"""Prints numbered lines with pauses, each rank tagged, to test live output of launch().

Rank 0 waits for a file the test creates only after it has seen rank 0's first line:
so the job can only finish if that line reached the caller while the job was running.
"""
import os
import sys
import time

rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", 0))
gate = sys.argv[1]
print(f"rank {rank} line 0", flush=True)
print(f"rank {rank} to stderr", file=sys.stderr, flush=True)
if rank == 0:
    for _ in range(600):  # the test opens the gate on seeing line 0; give up after 60 s
        if os.path.exists(gate):
            break
        time.sleep(0.1)
    else:
        print("gate never opened", flush=True)
        sys.exit(5)
for i in range(1, 3):
    time.sleep(0.2)
    print(f"rank {rank} line {i}", flush=True)
