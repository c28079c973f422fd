import jax
import pytest


@pytest.fixture(scope="module")
def x64():
    """64-bit JAX types for the tests of one module (restored afterwards).

    Use with ``pytestmark = pytest.mark.usefixtures("x64")``.
    """
    with jax.enable_x64(True):
        yield
