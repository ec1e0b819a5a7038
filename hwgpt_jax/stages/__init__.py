"""The pipeline's stages: one frozen config and one `run(config, out)` each, owning its files,
metadata and plots."""
