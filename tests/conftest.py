"""Test layout: tests/kernels and tests/nn run on the CPU path; tests/simulator runs the CUDA kernels
in Numba's simulator in its own pytest run (NUMBA_ENABLE_CUDASIM=1 must be set before numba is
imported); tests/gpu needs CuPy and a GPU and is skipped elsewhere."""
from pathlib import Path

import pytest
from hypothesis import settings

from kernels import backend

HERE = Path(__file__).parent
settings.register_profile("numbanet", deadline=None, max_examples=25, derandomize=True)
settings.load_profile("numbanet")


def pytest_ignore_collect(collection_path, config):
    try:
        parts = Path(collection_path).relative_to(HERE).parts
    except ValueError:
        return None
    if not parts or not (HERE / parts[0]).is_dir():
        return None
    in_simulator_folder = parts[0] == "simulator"
    if backend.SIMULATOR and not in_simulator_folder:
        return True  # the simulator run executes only the simulator tests
    if not backend.SIMULATOR and in_simulator_folder:
        return True  # simulator tests need the flag set before numba is imported
    return None


def pytest_collection_modifyitems(config, items):
    skip_gpu = pytest.mark.skip(reason="needs CuPy and a CUDA GPU")
    for item in items:
        parts = Path(item.fspath).relative_to(HERE).parts
        if parts[0] == "gpu":
            item.add_marker(pytest.mark.gpu)
            if not backend.gpu_available():
                item.add_marker(skip_gpu)
        elif parts[0] == "simulator":
            item.add_marker(pytest.mark.simulator)


@pytest.fixture
def deterministic():
    """kernels.use_deterministic_algorithms(True) for one test, then the setting as it was."""
    with backend.deterministic_algorithms(True):
        yield
