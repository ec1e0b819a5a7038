"""The weight-sharing supernet as Flax NNX modules, dense extraction, parameter slicing, the
optimizer and checkpoint loading."""
