"""The search spaces: architectures, sampling and genes, encodings, analytic and published-model
costs, and the arch-file reader."""
