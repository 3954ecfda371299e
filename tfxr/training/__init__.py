"""Training machinery shared by the classifier and the GAN.

* ``checkpoints`` - the one checkpoint mechanism (tf.train.CheckpointManager).
* ``schedule``    - learning-rate warm-up, reduce-on-plateau, early stopping (pure policy).
* ``runlog``      - config.yaml, history.json, TensorBoard and console lines (rank 0).
* ``classifier``  - the classifier trainer: model, optimizer, distributed step, the loop.
"""
