"""Write the image ids this rank trains on in one epoch (batch 1, its whole share).

    mpirun -np N python -m tests.mpi_scripts.rank_records DATA OUT
"""
import sys

from tfxr import distributed as dist
from tfxr.data.pipeline import DataConfig, build_dataset
from tfxr.data.records import rank_assignment, read_manifest, shard_files

data, out = sys.argv[1:3]
dist.init()
rank, world = dist.rank(), dist.size()
manifest = read_manifest(data)
share = rank_assignment(shard_files(data, "train", manifest), rank, world)[2]
# deterministic=False: the production setting, where the interleave order may vary by rank
ds = build_dataset(data, "train", DataConfig(batch_size=1, deterministic=False), training=True, rank=rank,
                   world=world, seed=3, with_meta=True, manifest=manifest, repeat_steps=share)
with open(f"{out}/ids-{rank}.txt", "w") as fh:
    fh.writelines(b["image_id"].numpy()[0].decode() + "\n" for b in ds)
print("world", world, "rank", rank, "records", share)
dist.shutdown()
