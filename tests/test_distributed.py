"""Data-parallel meta-training (issue 20): W processes (gloo, one thread each) end where one process does.

Meta-parameters are compared in float64 to 1e-10 relative. The one exception is explained and tested in
``test_conv_net_with_batch_norm_and_l2f``: a conv bias followed by batch norm has a meta-gradient of exactly 0,
computed as rounding noise, which Adam turns into full-size steps in any summation order.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from innerloop import config as C
from innerloop.distributed import World
from innerloop.train import train

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs gloo")

SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
F64 = ['train.dtype="float64"', "train.log_every=2", "train.checkpoint_every=3"]
TIMING = {"tasks_per_s", "elapsed_s", "eval_s"}


def _worker(rank: int, world: int, store: str, config: str, sets: list[str], out: str, resume: bool) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        train(C.load(config, sets), out, resume=resume, progress=False)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run(tmp: Path, world: int, config: str, sets: list[str], name: str, resume: bool = False) -> Path:
    out = tmp / name
    if world == 1:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            train(C.load(config, sets), out, resume=resume, progress=False)
        finally:
            torch.set_num_threads(threads)
    else:
        store = tmp / f"{name}.store{int(resume)}"
        mp.spawn(_worker, args=(world, str(store), config, sets, str(out), resume), nprocs=world, join=True)
    return out


def _eval_worker(rank: int, world: int, store: str, run_dir: str, out: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        from innerloop.evaluate import evaluate_run

        result = evaluate_run(run_dir)
        Path(f"{out}.{rank}").write_text(json.dumps(result))
        dist.barrier()  # as the command line does: nobody leaves the group while another still works in it
    finally:
        dist.destroy_process_group()


def sharded_eval(tmp: Path, world: int, run_dir: Path) -> list[dict]:
    """Every rank's evaluation result (each must hold all tasks' scores)."""
    out = tmp / f"eval{world}"
    mp.spawn(_eval_worker, args=(world, str(tmp / f"eval{world}.store"), str(run_dir), str(out)), nprocs=world,
             join=True)
    return [json.loads(Path(f"{out}.{r}").read_text()) for r in range(world)]


def state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)


def metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(l).items() if k not in TIMING}
            for l in (run_dir / "metrics.jsonl").read_text().splitlines()]


def assert_same_run(a: Path, b: Path, skip: tuple[str, ...] = ()) -> None:
    sa, sb = state(a), state(b)
    assert sa["iteration"] == sb["iteration"]
    for k, v in sa["meta"].items():
        if any(s in k for s in skip):
            continue
        rel = float((sb["meta"][k] - v).abs().max() / v.abs().max().clamp_min(1e-30))
        assert rel < 1e-10, (k, rel)
    ma, mb = metrics(a), metrics(b)
    assert len(ma) == len(mb) and [m.keys() for m in ma] == [m.keys() for m in mb]
    for x, y in zip(ma, mb):
        for k in x:
            if isinstance(x[k], float):
                assert y[k] == pytest.approx(x[k], rel=1e-10), (k, x, y)
            else:
                assert x[k] == y[k]


def test_shards_partition_every_batch():
    for size in range(1, 6):
        for n in range(0, 9):
            blocks = [World(r, size).shard(n) for r in range(size)]
            assert blocks[0][0] == 0 and blocks[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
            assert max(h - l for l, h in blocks) - min(h - l for l, h in blocks) <= 1


@pytest.mark.parametrize("config,extra", [("sinusoid/alfa-random", []), ("sinusoid/lft", []),
                                          ("sinusoid/lft", ['oracle.kind="zo"', "inner.steps=3"])])
def test_shard_gradients_sum_to_the_batch_gradient(config, extra):
    """In one process: per-task random inits are drawn for the whole batch and sliced, and zeroth-order directions
    are keyed by each task's index in the batch, so the shards' scaled gradients sum to the full batch's (a shard
    with no task included)."""
    from innerloop.build import build

    cfg = C.load(config, F64 + ["train.meta_batch=5", *extra])
    tasks, meta = build(cfg)
    params = [p for p in meta.parameters() if p.requires_grad]
    batch = tasks.train_batch(5, 0, 0, dtype=torch.float64)
    torch.manual_seed(1)
    full, _, _ = meta.meta_backward_span(batch, 0, 0, meta.steps, None)
    want = [p.grad.clone() for p in params]
    total, losses = [torch.zeros_like(p) for p in params], []
    for shard in [(0, 2), (2, 2), (2, 3), (3, 5)]:
        for p in params:
            p.grad = None
        torch.manual_seed(1)
        part, _, _ = meta.meta_backward_span(batch, 0, 0, meta.steps, None, shard=shard)
        losses.append(part)
        for t, p in zip(total, params):
            if p.grad is not None:
                t += p.grad
    # the same draws per task: equal up to the rounding of a differently sized vmap (bitwise on some CPUs, not all)
    torch.testing.assert_close(torch.cat(losses), full, rtol=1e-12, atol=0)
    for t, w in zip(total, want):  # summation order only: 1e-10 relative to the tensor's largest entry
        assert float((t - w).abs().max()) <= 1e-10 * float(w.abs().max()), float((t - w).abs().max() / w.abs().max())


CASES = {  # config, extra settings, world sizes
    "maml, uneven shards": ("sinusoid/maml", ["train.meta_batch=5"], (2, 3)),
    "alfa-maml": ("sinusoid/alfa-maml", ["train.meta_batch=4"], (3,)),
    "alfa-random (per-task random init)": ("sinusoid/alfa-random", ["train.meta_batch=4"], (2,)),
    "lft, 2 truncated spans": ("sinusoid/lft", ["train.meta_batch=3", "inner.steps=4", "train.truncation=2"], (2,)),
    "l2o": ("sinusoid/l2o", ["train.meta_batch=3", "inner.steps=3", "train.truncation=3"], (2,)),
    "a rank with no task": ("sinusoid/maml", ["train.meta_batch=2"], (3,)),
    "zeroth-order lft": ("sinusoid/lft", ['oracle.kind="zo"', "train.meta_batch=3", "inner.steps=3"], (2, 3)),
    "zeroth-order l2o, 2 truncated spans": ("sinusoid/l2o", ['oracle.kind="zo"', "train.meta_batch=3", "inner.steps=4",
                                                             "train.truncation=2"], (2,)),
    "zeroth-order maml": ("sinusoid/maml", ['oracle.kind="zo"', "train.meta_batch=4", "inner.steps=2"], (3,)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_training_in_several_processes_equals_one(tmp_path, case):
    config, extra, worlds = CASES[case]
    sets = F64 + ["train.iterations=5", *extra]
    ref = run(tmp_path, 1, config, sets, "w1")
    for w in worlds:
        assert_same_run(ref, run(tmp_path, w, config, sets, f"w{w}"))


def test_resume_across_world_sizes(tmp_path):
    """Started in 2 processes, continued in 3, then in 1: the trajectory of one uninterrupted process."""
    sets = F64 + ["train.meta_batch=5"]
    ref = run(tmp_path, 1, "sinusoid/alfa-maml", sets + ["train.iterations=9"], "ref")
    run(tmp_path, 2, "sinusoid/alfa-maml", sets + ["train.iterations=4"], "moved")  # stops on log lines (2)
    run(tmp_path, 3, "sinusoid/alfa-maml", sets + ["train.iterations=6"], "moved", resume=True)
    moved = run(tmp_path, 1, "sinusoid/alfa-maml", sets + ["train.iterations=9"], "moved", resume=True)
    assert_same_run(ref, moved)


@pytest.mark.skipif(not (SHARED / "omniglot").exists(), reason="shared Omniglot data not present")
def test_conv_net_with_batch_norm_and_l2f(tmp_path, monkeypatch):
    """4-conv with batch norm and L2F attenuation (loop executor). The conv biases feed batch norm, which
    removes them: their exact meta-gradient is 0 and the computed one rounding noise (~1e-17), which Adam
    normalises into +-meta_lr steps whose sign depends on summation order. They are excluded from the
    parameter comparison; the function they compute, the evaluation, must agree."""
    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    sets = F64 + ["train.iterations=4", "train.meta_batch=3", "model.filters=4", "task.query=2", "train.workers=1",
                  "eval.tasks=6", "eval.chunk=6", "task.eval_query=2"]
    ref = run(tmp_path, 1, "omniglot/maml-l2f", sets, "w1")
    two = run(tmp_path, 2, "omniglot/maml-l2f", sets, "w2")
    grads = {k for k in state(ref)["meta"] if "conv__bias" in k}
    assert grads, "the 4-conv's conv biases were expected in the meta-parameters"
    assert_same_run(ref, two, skip=("conv__bias",))
    from innerloop.evaluate import evaluate_run

    a, b = evaluate_run(ref), evaluate_run(two)
    assert a["values"] == pytest.approx(b["values"], rel=1e-10)


@pytest.mark.skipif(not ((SHARED / "mnist").exists() and (SHARED / "cifar10").exists()),
                    reason="shared MNIST / CIFAR-10 data not present")
def test_incongruous_mixture(tmp_path, monkeypatch):
    """LFT on MNIST + CIFAR-10 tasks of different architectures, random init per task, one LSTM fine-tuner."""
    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    sets = F64 + ["train.iterations=3", "inner.steps=3", "train.truncation=3", "model.hidden=[8]", "model.filters=4",
                  "train.meta_batch=5"]
    ref = run(tmp_path, 1, "lft/classification", sets, "w1")
    assert_same_run(ref, run(tmp_path, 2, "lft/classification", sets, "w2"))


def test_stream_noise_is_refused_in_several_processes(tmp_path):
    """``oracle.noise = "stream"`` takes each task's directions after the previous task's: not shardable."""
    sets = ["train.iterations=2", 'oracle.kind="zo"', 'oracle.noise="stream"', "train.meta_batch=2", "train.workers=1"]
    with pytest.raises(Exception, match="oracle.noise = 'keyed'"):
        run(tmp_path, 2, "sinusoid/lft", sets, "zo")
    assert not (tmp_path / "zo").exists()


def test_torchrun_command_line_equals_one_process(tmp_path):
    """``innerloop train --nproc 2`` (torchrun --standalone underneath) against ``innerloop train``."""
    args = ["train", "sinusoid/alfa-maml", "--quiet", "--json", "--set", "eval.tasks=10", *sum((["--set", s] for s in F64), []),
            "--set", "train.iterations=4", "--set", "train.meta_batch=3"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run([sys.executable, "-m", "innerloop", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env)
    two = subprocess.run([sys.executable, "-m", "innerloop", *args, "--out", str(tmp_path / "two"), "--nproc", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert_same_run(tmp_path / "one", tmp_path / "two")
    evals = [json.loads(p.stdout.strip().splitlines()[-1]) for p in (one, two)]
    assert evals[1]["mean"] == pytest.approx(evals[0]["mean"], rel=1e-10)
    assert len(two.stdout.strip().splitlines()) == 2  # rank 0 alone prints
    scores = subprocess.run([sys.executable, "-m", "innerloop", "eval", str(tmp_path / "one"), "--json", "--nproc", "2"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert scores.returncode == 0, scores.stderr[-3000:]
    assert json.loads(scores.stdout)["values"] == json.loads(
        subprocess.run([sys.executable, "-m", "innerloop", "eval", str(tmp_path / "one"), "--json"],
                       capture_output=True, text=True, env=env).stdout)["values"]



def test_a_process_of_a_job_exits_without_the_interpreter_teardown_and_loses_no_output():
    """A process of a job (``WORLD_SIZE`` > 1) leaves by ``os._exit`` (the C++ teardown of the collectives' threads
    could abort a finished process): its piped output is flushed first, and its exit status is the command's."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    plain = subprocess.run([sys.executable, "-m", "innerloop", "configs", "--keys"], capture_output=True, text=True,
                           env=env)
    env["WORLD_SIZE"] = "2"
    marker = "import atexit, runpy, sys; atexit.register(lambda: print('TEARDOWN', file=sys.stderr)); "
    for args, code in ((["configs", "--keys"], 0), (["configs", "no/such-config"], 2)):
        job = subprocess.run([sys.executable, "-c", marker + "sys.argv = ['innerloop', *sys.argv[1:]]; "
                              "runpy.run_module('innerloop', run_name='__main__')", *args],
                             capture_output=True, text=True, env=env)
        assert job.returncode == code, job.stderr[-2000:]
        assert "TEARDOWN" not in job.stderr  # left before the interpreter's exit handlers
        if code == 0:
            assert job.stdout == plain.stdout and len(plain.stdout) > 10_000  # block-buffered pipe: all of it
        else:
            assert "innerloop: error:" in job.stderr

@pytest.mark.parametrize("config,extra", [("sinusoid/alfa-maml", []), ("sinusoid/alfa-random", []),
                                          ("sinusoid/lft", ['oracle.kind="zo"', "inner.steps=3"])])
def test_sharded_evaluation_equals_one_process(tmp_path, config, extra):
    """Whole eval.chunk blocks per process, each with the random numbers one process gives those tasks (per-task
    random inits drawn for all tasks and sliced, zeroth-order directions keyed by task): the per-task scores, mean
    and CI are one process's, exactly, on every rank."""
    from innerloop.evaluate import evaluate_run

    sets = ["train.iterations=2", "train.meta_batch=3", "eval.tasks=10", "eval.chunk=3", *extra]
    run_dir = run(tmp_path, 1, config, sets, "run")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each spawned process runs (float32 sums may split differently across threads)
    try:
        one = evaluate_run(run_dir)
    finally:
        torch.set_num_threads(threads)
    for world in (2, 3):
        for result in sharded_eval(tmp_path, world, run_dir):
            assert result["values"] == one["values"] and result["mean"] == one["mean"] and result["ci95"] == one["ci95"]


@pytest.mark.skipif(not (SHARED / "omniglot").exists(), reason="shared Omniglot data not present")
def test_sharded_evaluation_of_image_episodes(tmp_path, monkeypatch):
    """Episode chunks go round-robin to the processes (chunk i keeps its own seed) and come back in order."""
    from innerloop.evaluate import evaluate_run

    monkeypatch.setenv("INNERLOOP_DATA", str(SHARED))
    monkeypatch.setenv("INNERLOOP_CACHE", str(tmp_path / "cache"))
    sets = ["train.iterations=1", "train.meta_batch=2", "model.filters=4", "task.query=2", "train.workers=1",
            "eval.tasks=7", "eval.chunk=2", "task.eval_query=2"]
    run_dir = run(tmp_path, 1, "omniglot/maml", sets, "run")
    one = evaluate_run(run_dir)
    for result in sharded_eval(tmp_path, 3, run_dir):
        assert result["values"] == one["values"] and result["mean"] == one["mean"]


def test_a_failure_in_every_process_is_one_line_under_nproc(tmp_path):
    """Each process fails the same check: one line (not one per process, no launcher report), exit 2."""
    run_dir = tmp_path / "taken"
    run_dir.mkdir()
    (run_dir / "checkpoint.pt").write_bytes(b"someone else's run")
    res = subprocess.run([sys.executable, "-m", "innerloop", "train", "sinusoid/maml", "--out", str(run_dir), "--quiet",
                          "--nproc", "2"], capture_output=True, text=True, timeout=300)
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 2 and lines == [
        f"innerloop: error: {run_dir} already holds a run: pass --resume to continue it, or choose a new --out"], res.stderr
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.pt"]


def test_reproduce_in_two_processes(tmp_path):
    """``innerloop reproduce ... --nproc 2``: each row's tasks split over 2 processes, rank 0 alone writes the row's
    result and the table; the scores are one process's (float32 here, the shipped dtype: equal to summation order)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INNERLOOP_THREADS": "1"}
    args = ["reproduce", "alfa-sinusoid", "--budget", "smoke", "--only", "main-maml-2x40-k5"]
    one = subprocess.run([sys.executable, "-m", "innerloop", *args, "--out", str(tmp_path / "one")],
                         capture_output=True, text=True, env=env, timeout=600)
    two = subprocess.run([sys.executable, "-m", "innerloop", *args, "--out", str(tmp_path / "two"), "--nproc", "2"],
                         capture_output=True, text=True, env=env, timeout=600)
    assert one.returncode == 0 and two.returncode == 0, two.stderr[-3000:]
    assert two.stderr.count("[row done]") == 1 and two.stdout.count("wrote ") == 1  # rank 0 alone reports
    a, b = (json.loads((tmp_path / d / "results.json").read_text())["rows"] for d in ("one", "two"))
    assert [r["method"] for r in a] == [r["method"] for r in b] == ["MAML"]
    assert b[0]["mean"] == pytest.approx(a[0]["mean"], rel=1e-4) and b[0]["tasks"] == a[0]["tasks"]
    assert not list((tmp_path / "two").rglob("*.tmp"))
    jobs = subprocess.run([sys.executable, "-m", "innerloop", *args, "--out", str(tmp_path / "three"), "--nproc", "2",
                           "--jobs", "2"], capture_output=True, text=True, env=env, timeout=120)
    assert jobs.returncode == 2 and jobs.stderr.count("innerloop: error:") == 1 and "--jobs" in jobs.stderr


def _pid_of_rank(rank: int, parent_env_marker: str) -> int | None:
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            env = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if f"RANK={rank}".encode() in env and f"LOCAL_RANK={rank}".encode() in env and \
                f"INNERLOOP_TEST_MARK={parent_env_marker}".encode() in env:
            return int(pid)
    return None


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the process of rank 1 through /proc")
def test_a_killed_process_is_named_and_the_run_resumes(tmp_path):
    """SIGKILL one of ``--nproc 2``'s processes mid-training: the command ends at once with one line naming rank 1
    (no traceback, no launcher report), and the run resumes from its last checkpoint in one process."""
    import signal
    import time

    out = tmp_path / "run"
    mark = tmp_path.name
    env = {**os.environ, "OMP_NUM_THREADS": "1", "INNERLOOP_TEST_MARK": mark}
    args = [sys.executable, "-m", "innerloop", "train", "sinusoid/maml", "--out", str(out), "--quiet", "--no-eval",
            "--set", "train.iterations=100000", "--set", "train.checkpoint_every=5", "--set", "train.log_every=5"]
    job = subprocess.Popen([*args, "--nproc", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 120
        while not (out / "checkpoint.pt").exists() and time.time() < deadline and job.poll() is None:
            time.sleep(0.2)
        victim = _pid_of_rank(1, mark)
        assert victim is not None and job.poll() is None, job.stderr.read() if job.poll() is not None else "no rank 1"
        t = time.time()
        os.kill(victim, signal.SIGKILL)
        _, err = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode != 0 and time.time() - t < 60
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("innerloop: error: process rank 1 of 2 died of SIGKILL"), err[-3000:]
    assert "--resume" in lines[0]
    kept = torch.load(out / "checkpoint.pt", weights_only=True)["iteration"]
    assert kept >= 5
    resumed = subprocess.run([*args[:-6], "--set", f"train.iterations={kept + 5}", "--set", "train.checkpoint_every=5",
                              "--set", "train.log_every=5", "--resume"], capture_output=True, text=True, env=env,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["iteration"] == kept + 5


def _dying_worker(rank: int, world: int, store: str, out: str, report: str) -> None:
    """Rank 1 dies abruptly (``os._exit``) in its third all-reduce; rank 0 records what ``train`` raised."""
    import innerloop.distributed as D

    os.environ[D.TIMEOUT_ENV] = "30"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    real, calls = D.reduce_step, [0]

    def reduce_step(*a, **k):
        calls[0] += 1
        if rank == 1 and calls[0] == 3:
            os._exit(9)
        return real(*a, **k)

    D.reduce_step = reduce_step
    try:
        train(C.load("sinusoid/maml", ["train.iterations=50", "train.checkpoint_every=1"]), out, progress=False)
    except BaseException as e:  # noqa: BLE001
        Path(report).write_text(f"{type(e).__name__}: {e}")
    os._exit(0)


def test_a_process_that_loses_its_peer_says_so_in_one_line(tmp_path):
    """Without innerloop's launcher (torchrun on another node, say), the surviving process's error is one
    :class:`PeerLost` line naming its rank and what is kept, not a gloo traceback."""
    report = tmp_path / "report"
    ctx = mp.start_processes(_dying_worker, args=(2, str(tmp_path / "store"), str(tmp_path / "run"), str(report)),
                             nprocs=2, join=False, start_method="spawn")
    for p in ctx.processes:
        p.join(120)
    text = report.read_text()
    assert text.startswith("PeerLost: process rank 0 of 2 lost another process of this job"), text
    assert "\n" not in text and "--resume" in text and "is kept" in text


def test_the_launcher_names_the_killed_process_not_the_peer_that_aborted(capsys):
    """A process SIGKILLed from outside can take a peer down with it (an abort inside gloo/NCCL): only the kill is
    reported, in one line; an abort alone is still reported."""
    from types import SimpleNamespace

    from innerloop.cli import _report_failures

    def died(signal):
        return SimpleNamespace(exitcode=-1, signal_name=lambda: signal)

    assert _report_failures({0: died("SIGABRT"), 1: died("SIGKILL")}, 2, "train") == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("innerloop: error: process rank 1 of 2 died of SIGKILL"), lines
    assert "--resume" in lines[0]
    _report_failures({0: died("SIGABRT"), 1: died("SIGTERM")}, 2, "train")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("innerloop: error: process rank 0 of 2 died of SIGABRT"), lines
