import os

import pytest
import torch

from innerloop.models import MLP
from innerloop.tasks import SinusoidTasks

#: test files (and single tests) that take tens of seconds, slowest first (measured with ``pytest --durations``): they
#: start first, so that under ``pytest -n N`` no worker begins one of them when the rest of the suite is done.
#: Only the order changes; a name missing here just runs in its collected place.
SLOW_FIRST = [
    "tests/test_readme_commands.py", "tests/test_faults.py", "tests/test_readme.py::test_readme_python_block_runs",
    "tests/test_resume_rules.py::test_ctrl_c", "tests/engine/test_compile.py", "tests/reproduce/test_omniglot.py",
    "tests/test_distributed.py", "tests/tasks/test_mixture.py", "tests/test_cli.py::test_testing_past",
    "tests/test_first_hour.py", "tests/test_runlock.py", "tests/test_loading.py",
    "tests/benchmarks/test_time_to_accuracy.py",
]


#: the end-to-end suite, marked ``slow`` and left out of the default run (``addopts`` in pyproject.toml): every README
#: command block, kill-and-resume of real processes, multi-process training and torch.compile. These launch dozens
#: of Python processes (~1.5 s of CPU each only to import torch) or compile for tens of seconds. ``pytest -m slow``
#: runs them, ``pytest -m ""`` everything; CI (.ci/run) runs both suites.
SLOW = [
    "tests/test_readme_commands.py", "tests/test_distributed.py", "tests/engine/test_compile.py",
    "tests/test_faults.py::test_killed_runs_resume_bit_identical_in_every_kill_mode",
]


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

    for item in items:
        if any(item.nodeid.startswith(prefix) for prefix in SLOW):
            item.add_marker(pytest.mark.slow)
    items.sort(key=rank)  # stable: the collected order within each rank


if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest -n N: each worker gets its share of the cores (N workers x all cores oversubscribes them several-fold)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def small_mlp():
    # tanh, not ReLU: finite differences must not straddle a kink
    torch.manual_seed(0)
    return MLP(1, [8, 8], 1, activation="tanh").double()


@pytest.fixture
def sine_batch():
    return SinusoidTasks(shots=5, query=6).train_batch(3, seed=1, iteration=0, dtype=torch.float64)
