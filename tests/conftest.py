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


def pytest_collection_modifyitems(items):
    def rank(item) -> int:
        return next((i for i, prefix in enumerate(SLOW_FIRST) if item.nodeid.startswith(prefix)), len(SLOW_FIRST))

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
