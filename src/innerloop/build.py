"""Turn a :class:`Config` into the pieces: task family, base learner, init, rule, oracle, objective."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from innerloop.config import Config
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError
from innerloop.inits import Attenuator, FixedInit, LearnedInit, RandomInit
from innerloop.models import MLP, Conv4, LeNet5, ResNet12
from innerloop.objectives import FinalQueryLoss, MultiStepLoss, TrajectoryLoss
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.rules import ALFA, SGD, CoordinateLSTM, PerStepLayerLR
from innerloop.tasks import EpisodeTasks, SinusoidTasks

DTYPES = {"float32": torch.float32, "float64": torch.float64}


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def data_root(dataset: str, root: str) -> str:
    """``root``, else ``$INNERLOOP_DATA/<dataset>``; a one-line error naming both fixes otherwise."""
    if root:
        return root
    base = os.environ.get("INNERLOOP_DATA")
    if not base:
        raise ConfigError(
            f"no folder for dataset '{dataset}': pass --set task.root=PATH or set INNERLOOP_DATA to the folder "
            f"holding '{dataset}/' (see `innerloop data download {dataset} --root PATH`)"
        )
    return str(Path(base) / dataset)


def _load(cfg: Config, dataset: str, root: str, split: str):
    from innerloop.data import load_dataset

    t = cfg.task
    options: dict = {}
    if t.image_size:
        options["image_size"] = t.image_size
    if dataset == "omniglot":
        options["rotations"] = t.rotations
    return load_dataset(dataset, data_root(dataset, root), split, **options)


def build_tasks(cfg: Config) -> SinusoidTasks | EpisodeTasks:
    t = cfg.task
    if t.family == "episodes":
        train = _load(cfg, t.dataset, t.root, t.train_split)
        if t.eval_dataset:
            test = _load(cfg, t.eval_dataset, t.eval_root, t.eval_split)
        else:
            test = _load(cfg, t.dataset, t.root, t.eval_split)
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if t.normalize == "imagenet" else (None, None)
        return EpisodeTasks(train, t.ways, t.shots, t.query, test, t.eval_query, mean, std)
    return SinusoidTasks(
        shots=t.shots, query=t.query, amplitude=tuple(t.amplitude), frequency=tuple(t.frequency),
        phase=tuple(t.phase), x_range=tuple(t.x_range),
    )


def build_model(cfg: Config, tasks: SinusoidTasks | EpisodeTasks | None = None) -> tuple[nn.Module, str]:
    """The base learner and its loss (image models are sized from the task family's images)."""
    m = cfg.model
    if not isinstance(tasks, EpisodeTasks):
        return MLP(1, m.hidden, 1, m.activation), "mse"
    c, h, _ = tasks.image_shape
    ways = tasks.ways
    if m.name == "conv4":
        return Conv4(c, ways, m.filters, h, m.activation, m.norm), "cross_entropy"
    if m.name == "resnet12":
        return ResNet12(c, ways, norm=m.norm), "cross_entropy"
    if m.name == "lenet5":
        return LeNet5(c, ways, h), "cross_entropy"
    return MLP(c * h * h, m.hidden, ways, m.activation), "cross_entropy"


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


def build(cfg: Config) -> tuple[SinusoidTasks | EpisodeTasks, MetaLearner]:
    """Everything a training run needs, on ``cfg.train.device`` in ``cfg.train.dtype``, seeded."""
    torch.manual_seed(cfg.train.seed)
    tasks = build_tasks(cfg)
    model, loss = build_model(cfg, tasks)
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
        attenuator=Attenuator(learner.inner, cfg.init.attenuate_detach) if cfg.init.attenuate else None,
    )
    model.to(device=device, dtype=DTYPES[cfg.train.dtype])
    meta.to(device=device, dtype=DTYPES[cfg.train.dtype])
    return tasks, meta
