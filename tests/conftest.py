import os

# Triton kernels (when present) run on the CPU interpreter in CI; must be set before any @triton.jit runs.
os.environ.setdefault("TRITON_INTERPRET", "1")

from hypothesis import settings  # noqa: E402

# CI runs a fixed, reproducible set of examples; locally hypothesis explores new ones each run
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def gmm():
    """The exact GMM denoiser test bed (hso.testbeds.load("gmm")), loaded once for every test that takes it."""
    from hso.testbeds import load
    return load("gmm")
