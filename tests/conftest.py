import os

# Triton kernels (when present) run on the CPU interpreter in CI; must be set before any @triton.jit runs.
os.environ.setdefault("TRITON_INTERPRET", "1")
