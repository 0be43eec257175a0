"""Turn a :class:`Config` into the pieces: task family, base learner, init, rule, oracle, objective."""

from __future__ import annotations

import torch
from torch import nn

from innerloop.config import Config
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import FixedInit, LearnedInit, RandomInit
from innerloop.models import MLP
from innerloop.objectives import FinalQueryLoss, MultiStepLoss, TrajectoryLoss
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.rules import ALFA, SGD, CoordinateLSTM, PerStepLayerLR
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
    if r.kind == "lstm":
        return CoordinateLSTM(hidden=r.hidden, layers=r.layers, preprocess=r.preprocess, k=r.log_k, scale=r.scale,
                              bias=r.bias, head_init_scale=r.head_init_scale)
    shapes = {n: p.shape for n, p in model.named_parameters() if n in set(learner.inner)}
    return ALFA(
        shapes, steps, lr=r.lr, weight_decay=r.weight_decay, generator_layers=r.generator_layers,
        inputs=r.inputs, alpha=r.alpha, beta=r.beta, alpha_granularity=r.alpha_granularity,
        beta_granularity=r.beta_granularity, per_param_decay=r.per_param_decay,
        detach_grad_input=r.detach_grad_input,
    )


def build_init(cfg: Config, model: nn.Module) -> nn.Module:
    i = cfg.init
    if i.kind == "learned":
        return LearnedInit(model)
    if i.kind == "fixed":
        return FixedInit(model, i.seed, i.scheme)
    return RandomInit(model, i.scheme, i.std)


def build_oracle(cfg: Config):
    o = cfg.oracle
    if o.kind == "zo":
        return ZerothOrderOracle(o.q, o.mu, o.directions)
    return AutogradOracle(cfg.inner.order)


def build_objective(cfg: Config):
    o = cfg.objective
    if o.kind == "msl":
        return MultiStepLoss(o.msl_epochs)
    if o.kind in ("lft", "l2o"):
        return TrajectoryLoss(o.weights, "query" if o.kind == "lft" else "union")
    return FinalQueryLoss()


def build(cfg: Config) -> tuple[SinusoidTasks, MetaLearner]:
    """Everything a training run needs, on ``cfg.train.device`` in ``cfg.train.dtype``, seeded."""
    torch.manual_seed(cfg.train.seed)
    tasks = build_tasks(cfg)
    model, loss = build_model(cfg)
    learner = Learner(model, loss)
    init = build_init(cfg, model)
    rule = build_rule(cfg, learner, model)
    objective = build_objective(cfg)
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available: use --set train.device=cpu")
    meta = MetaLearner(
        learner, init, rule, build_oracle(cfg), objective, cfg.inner.steps,
        executor=cfg.train.executor, checkpoint=cfg.train.checkpoint_unroll, device=device,
        truncation=cfg.train.truncation,
    )
    model.to(device=device, dtype=DTYPES[cfg.train.dtype])
    meta.to(device=device, dtype=DTYPES[cfg.train.dtype])
    return tasks, meta
