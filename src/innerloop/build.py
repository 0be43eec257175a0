"""Turn a :class:`Config` into the pieces: task family, base learner, init, rule, oracle, objective."""

from __future__ import annotations

import torch
from torch import nn

from innerloop.config import Config
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import FixedInit, LearnedInit
from innerloop.models import MLP
from innerloop.objectives import FinalQueryLoss, MultiStepLoss
from innerloop.oracles import AutogradOracle
from innerloop.rules import ALFA, SGD, PerStepLayerLR
from innerloop.tasks import SinusoidTasks

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def build_tasks(cfg: Config) -> SinusoidTasks:
    t = cfg.task
    return SinusoidTasks(
        shots=t.shots, query=t.query, amplitude=tuple(t.amplitude), frequency=tuple(t.frequency),
        phase=tuple(t.phase), x_range=tuple(t.x_range),
    )


def build_model(cfg: Config) -> tuple[nn.Module, str]:
    """The base learner and its loss."""
    m = cfg.model
    return MLP(1, m.hidden, 1, m.activation), "mse"


def build_rule(cfg: Config, learner: Learner, model: nn.Module) -> nn.Module:
    r, steps = cfg.rule, cfg.inner.steps
    if r.kind == "sgd":
        return SGD(r.lr)
    if r.kind == "lslr":
        return PerStepLayerLR(learner.inner, steps, r.lr)
    shapes = {n: p.shape for n, p in model.named_parameters() if n in set(learner.inner)}
    return ALFA(
        shapes, steps, lr=r.lr, weight_decay=r.weight_decay, generator_layers=r.generator_layers,
        inputs=r.inputs, alpha=r.alpha, beta=r.beta, alpha_granularity=r.alpha_granularity,
        beta_granularity=r.beta_granularity, per_param_decay=r.per_param_decay,
        detach_grad_input=r.detach_grad_input,
    )


def build(cfg: Config) -> tuple[SinusoidTasks, MetaLearner]:
    """Everything a training run needs, on ``cfg.train.device`` in ``cfg.train.dtype``, seeded."""
    torch.manual_seed(cfg.train.seed)
    tasks = build_tasks(cfg)
    model, loss = build_model(cfg)
    learner = Learner(model, loss)
    init = LearnedInit(model) if cfg.init.kind == "learned" else FixedInit(model, cfg.init.seed, cfg.init.scheme)
    rule = build_rule(cfg, learner, model)
    objective = MultiStepLoss(cfg.objective.msl_epochs) if cfg.objective.kind == "msl" else FinalQueryLoss()
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available: use --set train.device=cpu")
    meta = MetaLearner(
        learner, init, rule, AutogradOracle(cfg.inner.order), objective, cfg.inner.steps,
        executor=cfg.train.executor, checkpoint=cfg.train.checkpoint_unroll, device=device,
    )
    model.to(device=device, dtype=DTYPES[cfg.train.dtype])
    meta.to(device=device, dtype=DTYPES[cfg.train.dtype])
    return tasks, meta
