"""Measurement kernels: quality of sub-networks with inherited weights, and hardware profiling
(latency, memory, FLOPs, energy sensors)."""
