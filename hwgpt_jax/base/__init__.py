"""Foundation utilities shared by every layer (atomic files, sidecars); imports nothing else from
hwgpt_jax."""
