"""Training machinery shared by the classifier and the GAN: checkpoints, and (as they
are split out of ``tfxr.train``) the schedule/stopping policy and the run logger."""
