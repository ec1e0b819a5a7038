"""The weight-sharing supernet as Flax NNX modules (`supernet`), parameter slicing (`params`),
the training step's pure functions (`step`), the optimizer (`optim`), training checkpoints
(`checkpoints`) and the dense model folder format (`dense`)."""
