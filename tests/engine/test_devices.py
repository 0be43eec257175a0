"""Device-agnostic checks: every executor on every available device gives the CPU float64 meta-gradient.

On a machine without CUDA the ``cuda`` cases are skipped (CI here has no GPU); on a GPU machine they check the
CUDA paths of the vmap executor, the loop (with task threads) and the checkpointed unroll, and a short training
run with ``train.device = "cuda"``.
"""

import pytest
import torch

from innerloop import config
from innerloop.engine import Learner, MetaLearner
from innerloop.inits import LearnedInit
from innerloop.models import Conv4
from innerloop.rules import ALFA
from tests.engine.test_normalisation import episode_batch

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device"))]


def meta_grads(device, executor, workers=1, checkpoint=0):
    torch.manual_seed(0)
    model = Conv4(1, 3, filters=4, image_size=16).double()
    learner = Learner(model, "cross_entropy")
    torch.manual_seed(1)
    rule = ALFA({n: model.get_parameter(n).shape for n in learner.inner}, 2, lr=0.1, form="paper").double()
    meta = MetaLearner(learner, LearnedInit(model).double(), rule, steps=2, executor=executor, device=device,
                       workers=workers, checkpoint=checkpoint).to(device)
    model.to(device)
    batch = tuple(t.to(device) for t in episode_batch())
    meta.meta_backward(batch)
    values, _ = meta.evaluate(batch, steps=3)
    return [p.grad.cpu() for p in meta.parameters() if p.grad is not None], values.cpu()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("executor,workers,checkpoint", [("vmap", 1, 0), ("loop", 1, 0), ("loop", 2, 0), ("vmap", 1, 1)])
def test_every_executor_on_every_device_matches_cpu(device, executor, workers, checkpoint):
    ref_g, ref_v = meta_grads("cpu", "loop")
    g, v = meta_grads(device, executor, workers, checkpoint)
    assert len(g) == len(ref_g)
    for a, b in zip(g, ref_g):
        torch.testing.assert_close(a, b, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(v, ref_v)


@pytest.mark.parametrize("device", DEVICES)
def test_training_runs_on_the_device(device, tmp_path):
    from innerloop.evaluate import evaluate_run
    from innerloop.train import train

    cfg = config.load("sinusoid/alfa-maml", ["train.iterations=4", "train.meta_batch=4", "inner.steps=2", "eval.tasks=10",
                                             "model.hidden=[8, 8]", "train.log_every=2", "train.checkpoint_every=2",
                                             f"train.device=\"{device}\""])
    train(cfg, tmp_path / "run", progress=False)
    result = evaluate_run(tmp_path / "run")
    assert result["tasks"] == 10 and result["mean"] == result["mean"]
