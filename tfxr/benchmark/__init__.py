r"""``python -m tfxr.benchmark``: honest throughput measurements (table, JSON, PNG).

    # the targets of issues 10 and 19 in one run (what `make benchmark` runs): benchmarks/results/suite.*
    python -m tfxr.benchmark suite
    # training images/s: settings side by side and, for --np, the three baselines
    python -m tfxr.benchmark train --model tb_cnn --image-size 128 --batch-size 32 --np 1,2 \
        --input random,pipeline --onednn on,off --precision fp32,bf16 --xla off,on
    # the detector's training step (tfxr.detect train's, random images and boxes) beside its bound
    python -m tfxr.benchmark train --model detector --image-size 256 --batch-size 8 --np 1,2
    # conversion: raw images -> TFRecords, images/s per pool-worker / MPI-rank count, beside the bound
    python -m tfxr.benchmark convert --workers 1,2 --np 1,2 -- --source nih \
        --images ../shared/data/nih_chestxray14_sample/images \
        --labels ../shared/data/nih_chestxray14_sample/Data_Entry_2017_sample.csv --image-size 224
    # input pipeline alone: TFRecord vs raw image files (same images, same options)
    python -m tfxr.benchmark input --data tfrec/nih224 --raw raw/nih224 --batch-size 32
    # where a Horovod run's communication time goes (a timeline from tfxr.train --timeline FILE)
    python -m tfxr.benchmark timeline runs/tb/timeline.json
    # where a training step's time goes: TF profiler, self time per op type (tfxr.benchmark.profile)
    python -m tfxr.benchmark profile --model densenet121 --image-size 224 --batch-size 16 --steps 3

How a training number is measured: every variant runs in fresh processes (oneDNN is
chosen when TensorFlow is imported), builds the model, runs ``--warmup`` steps that are
not timed (tracing, allocation, oneDNN primitive creation), then ``--repeats`` timed
windows of ``--steps`` steps each; the table gives the median and the min-max of the
windows and the JSON every window.  ``random`` input is one random batch kept in memory
(the model-only rate); ``pipeline`` is the real tf.data pipeline with augmentation
reading TFRecords.  Layouts, measured in the same run so that they share the machine's
state: ``all-cores`` (one process, every core), ``one-core`` (one process pinned to one
core), ``independent`` (N one-core processes at once, no communication: the hardware
bound for N ranks) and ``ranks`` (``mpirun -np N`` one core per rank, or ``horovodrun
--gloo``: the real Horovod step; ``vs bound`` = its rate / the independent bound).

FLOP fraction = images/s x 3 x forward FLOPs per image (``tfxr.models.model_report``; a
training step is about 3x the forward pass) / (cores used x the run's fp32 ceiling per
core): the largest of the nominal peak (clock x FLOPs/cycle, ``tfxr.cpu.fp32_ceiling``),
the fp32 GEMM measured in the same run and any fp32 rate the run reached.  Every result
file records the command, the machine, the CPU and the settings.

The package, along its seams: ``analysis`` (variants, summaries, ceilings, ratios,
targets), ``workers`` (the measured processes), ``profile`` (the per-op profile), ``runner`` (starting them, collecting
their results), ``suites`` (what each subcommand measures), ``report`` (tables, PNG,
result files), ``options`` (each subcommand's checked config) and ``__main__`` (the CLI).
"""
