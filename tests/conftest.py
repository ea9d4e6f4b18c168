"""Session-wide test settings."""

import pytest


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """stem2d's cache (ONNX exports of the networks, stem2d.models.runtime) in a temporary folder,
    so the tests neither read a user's cache nor leave files in it; subprocesses inherit it."""
    patch = pytest.MonkeyPatch()
    patch.setenv("STEM2D_CACHE", str(tmp_path_factory.mktemp("stem2d_cache")))
    yield
    patch.undo()
