"""Training: one run scaffold and the trainers that plug into it.

* ``run``         - the one run scaffold: seeding, broadcast, the epoch loop, logging,
                    checkpoints and ``--resume``, the run-folder lock, NaN and early stopping.
* ``classifier``  - the classifier trainer: model, optimizer, ``DistributedStep``, validation.
* ``gan``         - the DCGAN trainer: both networks, ``GanStep``, samples and plots.
* ``checkpoints`` - the one checkpoint mechanism (tf.train.CheckpointManager).
* ``schedule``    - learning-rate warm-up, reduce-on-plateau, early stopping (pure policy).
* ``runlog``      - config.yaml, history.json, TensorBoard and console lines (rank 0).
"""
