"""``INNERLOOP_THREADS`` and the busy-machine warning (two runs each taking every core slow both several-fold)."""

import pytest
import torch

from innerloop.cli import main
from innerloop.errors import UserError
from innerloop.threads import busy_machine_warning, env_threads


def test_a_busy_machine_is_named_with_the_thread_count_that_fits(monkeypatch):
    monkeypatch.delenv("INNERLOOP_THREADS", raising=False)
    line = busy_machine_warning(2, load=1.0, cores=2)  # another single-threaded job already runs
    assert line.startswith("warning: the machine is already busy (load 1.0 on 2 cores)")
    assert line.endswith("set INNERLOOP_THREADS=1 (or fewer)") and "\n" not in line
    assert busy_machine_warning(2, load=0.2, cores=2) is None  # idle
    assert busy_machine_warning(1, load=3.0, cores=2) is None  # one thread cannot oversubscribe further
    monkeypatch.setenv("INNERLOOP_THREADS", "2")
    assert busy_machine_warning(2, load=1.0, cores=2) is None  # the user chose


@pytest.mark.parametrize("raw", ["0", "-2", "two"])
def test_a_bad_thread_count_is_one_line_naming_the_variable(monkeypatch, raw):
    monkeypatch.setenv("INNERLOOP_THREADS", raw)
    with pytest.raises(UserError, match="INNERLOOP_THREADS=.* must be a whole number >= 1"):
        env_threads()


def test_train_runs_with_the_threads_it_is_given(monkeypatch, tmp_path, capsys):
    before = torch.get_num_threads()
    monkeypatch.setenv("INNERLOOP_THREADS", "1")
    monkeypatch.setattr("os.getloadavg", lambda: (64.0, 64.0, 64.0))  # would warn, but the user chose
    try:
        assert main(["train", "sinusoid/maml", "--out", str(tmp_path / "run"), "--set", "train.iterations=2",
                     "--quiet", "--no-eval"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "warning" not in capsys.readouterr().err
