"""Turn a :class:`Config` into the pieces: task family, base learner, init, rule, oracle, objective."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from innerloop.config import Config
from innerloop.engine import Learner, MetaLearner
from innerloop.errors import ConfigError, UserError
from innerloop.inits import Attenuator, FixedInit, LearnedInit, RandomInit
from innerloop.models import MLP, Conv4, LeNet5, Perturbation, ResNet12
from innerloop.objectives import FinalQueryLoss, MultiStepLoss, TrajectoryLoss
from innerloop.oracles import AutogradOracle, ZerothOrderOracle
from innerloop.rules import ALFA, SGD, CoordinateLSTM, PerStepLayerLR, SharedALFA
from innerloop.tasks import EpisodeTasks, SinusoidTasks, TaskMixture

DTYPES = {"float32": torch.float32, "float64": torch.float64}


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def data_root(dataset: str, root: str) -> str:
    """``root``, else ``$INNERLOOP_DATA/<dataset>``; a one-line error naming both fixes otherwise."""
    if root:
        return root
    base = os.environ.get("INNERLOOP_DATA")
    if not base:
        raise ConfigError(
            f"no folder for dataset '{dataset}': pass --data DIR (the folder holding '{dataset}/'), or set "
            f"INNERLOOP_DATA to it, or --set task.root=PATH when training (see `innerloop data download {dataset} "
            "--root PATH`)"
        )
    return str(Path(base) / dataset)


def _load(cfg: Config, dataset: str, root: str, split: str):
    from innerloop.data import load_dataset

    t = cfg.task
    options: dict = {}
    if t.image_size and t.family == "episodes":
        options["image_size"] = t.image_size
    if dataset == "omniglot":
        options["rotations"] = t.rotations
    folder = data_root(dataset, root)
    try:
        return load_dataset(dataset, folder, split, **options)
    except UserError as e:
        inner = Path(folder) / dataset
        if inner.is_dir() and not isinstance(e, ConfigError):  # the folder above the dataset's: say so
            raise type(e)(f"{e} — note: {folder} holds a '{dataset}/' folder: the dataset's folder is {inner} "
                          f"(task.root names the dataset's own folder; --data and INNERLOOP_DATA the folder above "
                          "it)") from None
        raise


def victims_root(cfg: Config) -> Path:
    return Path(cfg.task.victims or os.environ.get("INNERLOOP_VICTIMS") or "victims")


_VICTIMS: dict[tuple[str, int], nn.Module] = {}
_CORRECT: dict[tuple[str, int, str, str, int], np.ndarray] = {}


def _victim_key(cfg: Config, source: str) -> tuple[str, int]:
    path = victims_root(cfg) / source / "victim.pt"
    if not path.is_file():
        raise ConfigError(f"no victim model at {path}: run `innerloop victim train --dataset {source} --out {path.parent}` "
                          f"(or point task.victims / $INNERLOOP_VICTIMS at the folder holding {source}/)")
    return str(path.resolve()), path.stat().st_mtime_ns


def load_source_victim(cfg: Config, source: str) -> nn.Module:
    """The trained victim classifier of a UAP source (``innerloop victim train --dataset SOURCE``),
    loaded once per process (evaluations rebuild the task family several times)."""
    from innerloop.victims import load_victim

    key = _victim_key(cfg, source)
    if key not in _VICTIMS:
        _VICTIMS[key] = load_victim(Path(key[0]).parent)[0]
    return _VICTIMS[key]


def _correct_only(cfg: Config, source: str, split: str, data):
    """The images of ``data`` the source's victim classifies correctly (the attack uses only those)."""
    from innerloop.data.base import ImageDataset
    from innerloop.victims import correctly_classified

    key = (*_victim_key(cfg, source), source, split, len(data.labels))
    if key not in _CORRECT:
        _CORRECT[key] = correctly_classified(load_source_victim(cfg, source), data.images, data.labels)
    idx = _CORRECT[key]
    return ImageDataset(data.images[idx], data.labels[idx], data.class_names, data.name)


def _classes(data, keep: list[int]):
    """The images of ``data`` whose class is in ``keep``, relabelled ``0 .. len(keep)-1`` in that order."""
    from innerloop.data.base import ImageDataset

    order = np.asarray(keep, dtype=np.int64)
    idx = np.flatnonzero(np.isin(data.labels, order))
    relabel = np.full(int(data.labels.max()) + 1, -1, dtype=np.int64)
    relabel[order] = np.arange(len(order))
    return ImageDataset(data.images[idx], relabel[data.labels[idx]], [data.class_names[c] for c in order], data.name)


def _source_tasks(cfg: Config, source: str, held_out: bool = False) -> EpisodeTasks | SinusoidTasks:
    """LFT tasks from one source: D_tr from its training split, D_val from its test split (same classes). A
    ``sinusoid`` source draws ``shots x ways`` support and ``query x ways`` query points per task from the
    ``task.amplitude`` / ``frequency`` / ``phase`` / ``x_range`` ranges; an ``omniglot`` source draws N-way
    K-shot episodes of its training alphabets and tests on its test alphabets. With ``task.holdout_classes``,
    mnist and cifar10 train on the other classes and (``held_out``) test on those only."""
    t = cfg.task
    if source == "sinusoid":
        return SinusoidTasks(shots=t.shots * t.ways, query=t.query * t.ways, amplitude=tuple(t.amplitude),
                             frequency=tuple(t.frequency), phase=tuple(t.phase), x_range=tuple(t.x_range))
    if source == "omniglot":
        return EpisodeTasks(_load(cfg, source, "", "train"), t.ways, t.shots, t.query, _load(cfg, source, "", "test"),
                            t.eval_query)
    train, test = _load(cfg, source, "", "train"), _load(cfg, source, "", "test")
    if t.family == "uap":  # only images the victim classifies correctly; labels stay the victim's
        train, test = _correct_only(cfg, source, "train", train), _correct_only(cfg, source, "test", test)
    elif t.holdout_classes:
        keep = t.holdout_classes if held_out else [c for c in range(train.num_classes) if c not in t.holdout_classes]
        train, test = _classes(train, keep), _classes(test, keep)
    return EpisodeTasks(train, t.ways, t.shots, t.query, None, t.eval_query, query_data=test,
                        relabel=t.family != "uap")


def records_root(cfg: Config) -> str:
    """``task.records``, else ``$INNERLOOP_RECORDS``; a one-line error naming the converter otherwise."""
    root = cfg.task.records or os.environ.get("INNERLOOP_RECORDS", "")
    if not root:
        raise ConfigError("no Meta-Dataset records folder: set task.records (or $INNERLOOP_RECORDS) to the folder "
                          "holding one folder per source; write them with `innerloop data to-records omniglot mnist "
                          "cifar10 --out DIR`")
    return root


NORMALIZE = {"none": (None, None), "imagenet": (IMAGENET_MEAN, IMAGENET_STD), "signed": ((0.5,) * 3, (0.5,) * 3)}


def _normalization(cfg: Config, channels: int):
    mean, std = NORMALIZE[cfg.task.normalize]
    return (None, None) if mean is None else (mean[:channels], std[:channels])


def build_record_tasks(cfg: Config):
    """``task.family = "records"``: Meta-Dataset episodes of the record folders ``task.sources`` (training) and
    ``task.eval_sources`` (testing) under :func:`records_root` (0 ways / shots / query = variable)."""
    from innerloop.tasks.records import RecordTasks

    t = cfg.task
    mean, std = _normalization(cfg, t.channels)
    return RecordTasks(records_root(cfg), t.sources, t.eval_sources or t.sources, ways=t.ways or None,
                       shots=t.shots or None, query=t.query or None, max_ways=t.max_ways,
                       image_size=t.image_size or 84, channels=t.channels, mean=mean, std=std,
                       max_support_set_size=t.max_support, max_num_query=t.max_query)


def build_tasks(cfg: Config) -> SinusoidTasks | EpisodeTasks | TaskMixture:
    t = cfg.task
    if t.family == "records":
        return build_record_tasks(cfg)
    if t.family in ("incongruous", "uap"):
        names = list(dict.fromkeys([*t.sources, *t.eval_sources]))
        held = {n: _source_tasks(cfg, n, held_out=True) for n in names
                if t.holdout_classes and n in ("mnist", "cifar10")}
        return TaskMixture({n: _source_tasks(cfg, n) for n in names}, t.sources, t.eval_sources or t.sources,
                           eval_tasks=held, eval_query={"sinusoid": t.eval_query * t.ways})
    if t.family == "episodes":
        train = _load(cfg, t.dataset, t.root, t.train_split)
        if t.eval_dataset:
            test = _load(cfg, t.eval_dataset, t.eval_root, t.eval_split)
        else:
            test = _load(cfg, t.dataset, t.root, t.eval_split)
        mean, std = _normalization(cfg, train.images.shape[1])
        return EpisodeTasks(train, t.ways, t.shots, t.query, test, t.eval_query, mean, std)
    return SinusoidTasks(
        shots=t.shots, query=t.query, amplitude=tuple(t.amplitude), frequency=tuple(t.frequency),
        phase=tuple(t.phase), x_range=tuple(t.x_range),
    )


#: Image channels of each dataset reader's output (``folder`` depends on its options: see :func:`model_spec`).
CHANNELS = {"omniglot": 1, "mnist": 1, "cifar10": 3, "miniimagenet": 3, "tieredimagenet": 3, "cub": 3}


def spec_of(tasks) -> dict:
    """What building the model needs from a task family: ``{"image_shape": [c, h, w], "ways": n}`` (episodes),
    ``{"sources": {name: spec}}`` (mixtures) or ``{}`` (sinusoid). Stored in every checkpoint, so a run can be
    loaded without its data (:func:`innerloop.load`)."""
    if isinstance(tasks, TaskMixture):
        return {"sources": {n: spec_of(src) for n, src in tasks.sources.items()}}
    if isinstance(tasks, EpisodeTasks):
        return {"image_shape": [int(v) for v in tasks.image_shape], "ways": int(tasks.ways)}
    from innerloop.tasks.records import RecordTasks

    if isinstance(tasks, RecordTasks):  # outputs for the most classes an episode may have; fewer are masked
        return {"image_shape": [int(v) for v in tasks.image_shape], "ways": int(tasks.ways or tasks.max_ways),
                "variable_ways": tasks.ways is None}
    return {}


def model_spec(cfg: Config) -> dict:
    """:func:`spec_of` computed from the config alone (the dataset's channels and its reader's image size), for
    checkpoints written before the spec was stored; None where the config cannot tell (a ``folder`` dataset)."""
    import inspect

    from innerloop.data import reader

    t = cfg.task

    def image(dataset: str) -> dict | None:
        if dataset == "sinusoid" and t.family == "incongruous":
            return {}
        if dataset not in CHANNELS:
            return None
        size = t.image_size if t.image_size and t.family == "episodes" else \
            inspect.signature(reader(dataset).read).parameters["image_size"].default
        h, w = (size, size) if isinstance(size, int) else size
        return {"image_shape": [CHANNELS[dataset], h, w], "ways": t.ways}

    if t.family == "records":
        size = t.image_size or 84
        return {"image_shape": [t.channels, size, size], "ways": t.ways or t.max_ways, "variable_ways": not t.ways}
    if t.family in ("incongruous", "uap"):
        specs = {n: image(n) for n in dict.fromkeys([*t.sources, *t.eval_sources])}
        return None if None in specs.values() else {"sources": specs}
    if t.family == "episodes":
        return image(t.dataset)
    return {}


def build_eval_tasks(cfg: Config, spec: dict | None = None) -> SinusoidTasks | EpisodeTasks | TaskMixture:
    """The task family for evaluation only: for image episodes just the evaluation data is read (the test split,
    or ``task.eval_dataset``), at the model's input size when ``spec`` gives it. The fixed test episodes are
    those of :func:`build_tasks` (they are drawn from the evaluation data alone)."""
    t = cfg.task
    if t.family != "episodes":
        return build_tasks(cfg)
    if t.eval_dataset:
        dataset, root, split = t.eval_dataset, t.eval_root, t.eval_split
    else:
        dataset, root, split = t.dataset, t.root, t.eval_split
    shape = (spec or {}).get("image_shape")
    if shape is not None and t.eval_dataset and dataset != "folder":
        import inspect

        from innerloop.data import reader

        if "image_size" in inspect.signature(reader(dataset).read).parameters:
            sized = Config()
            sized.task.family, sized.task.image_size = "episodes", [shape[1], shape[2]]
            data = _load(sized, dataset, root, split)
        else:
            data = _load(cfg, dataset, root, split)
    else:
        data = _load(cfg, dataset, root, split)
    if shape is not None and list(data.images.shape[1:]) != list(shape):
        raise ConfigError(f"the run's model takes {shape[0]}-channel {shape[1]}x{shape[2]} images but {dataset} "
                          f"({split}) gives {tuple(data.images.shape[1:])}: evaluate on a dataset with "
                          f"{shape[0]}-channel images")
    if shape is not None and spec.get("ways") is not None and t.ways != spec["ways"]:
        raise ConfigError(f"the run's model outputs {spec['ways']} classes: evaluate {spec['ways']}-way tasks, not "
                          f"{t.ways}-way")
    mean, std = _normalization(cfg, data.images.shape[1])
    return EpisodeTasks(data, t.ways, t.shots, 1, data, t.eval_query, mean, std)


def build_source_learner(cfg: Config, source: str, spec: dict) -> tuple[nn.Module, Learner]:
    """Incongruous families: an MLP for MNIST (and Omniglot) and a CNN for CIFAR-10 (classification, spec 11), the
    1-40-40-1 ReLU MLP for sinusoid regression, or a perturbation of the source's victim (UAP, spec 12)."""
    m, t = cfg.model, cfg.task
    c, h, _ = spec.get("image_shape") or (1, 1, 1)
    if t.family == "uap":
        model = Perturbation(load_source_victim(cfg, source), (c, h, h))
        lam, d = t.uap_lambda, c * h * h
        learner = Learner(model, "cw", penalty=lambda p: lam * p["delta"].pow(2).sum(),
                          extra_metrics={"l2": lambda p: p["delta"].norm(),
                                         "rms": lambda p: p["delta"].norm() / d ** 0.5}, kappa=t.uap_kappa)
        return model, learner
    if source == "sinusoid":  # MAML's regression network, whatever model.hidden says for the image sources
        model = MLP(1, [40, 40], 1, "relu")
        return model, Learner(model, "mse")
    if source in ("mnist", "omniglot"):
        model = MLP(c * h * h, m.hidden, t.ways, m.activation)
    else:
        model = Conv4(c, t.ways, m.filters, h, m.activation, m.norm)
    return model, Learner(model, "cross_entropy", adapt_norm=m.adapt_norm)


def build_model(cfg: Config, tasks: SinusoidTasks | EpisodeTasks | dict | None = None) -> tuple[nn.Module, str]:
    """The base learner and its loss (image models are sized from the task family's images, or from a
    :func:`spec_of` dict)."""
    m = cfg.model
    spec = tasks if isinstance(tasks, dict) else spec_of(tasks) if tasks is not None else {}
    if "image_shape" not in spec:
        return MLP(1, m.hidden, 1, m.activation), "mse"
    c, h, _ = spec["image_shape"]
    ways = spec["ways"]
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
    if r.kind == "alfa_shared":
        return SharedALFA(lr=r.lr, weight_decay=r.weight_decay, hidden=r.hidden, bound=r.bound,
                          detach_grad_input=r.detach_grad_input, relative=r.relative)
    if r.kind == "lstm":
        return CoordinateLSTM(hidden=r.hidden, layers=r.layers, preprocess=r.preprocess, k=r.log_k, scale=r.scale,
                              bias=r.bias, head_init_scale=r.head_init_scale, max_update=r.max_update,
                              descent=r.descent, output=r.output, adam_range=r.adam_range)
    shapes = {n: p.shape for n, p in model.named_parameters() if n in set(learner.inner)}
    return ALFA(
        shapes, steps, lr=r.lr, weight_decay=r.weight_decay, generator_layers=r.generator_layers,
        inputs=r.inputs, alpha=r.alpha, beta=r.beta, alpha_granularity=r.alpha_granularity,
        beta_granularity=r.beta_granularity, per_param_decay=r.per_param_decay,
        detach_grad_input=r.detach_grad_input, form=r.form, bound=r.bound, schedule=r.schedule,
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
        return ZerothOrderOracle(o.q, o.mu, o.directions, o.detach, o.noise, o.antithetic)
    return AutogradOracle(cfg.inner.order)


def build_objective(cfg: Config):
    o = cfg.objective
    if o.kind == "msl":
        return MultiStepLoss(o.msl_epochs)
    if o.kind in ("lft", "l2o"):
        return TrajectoryLoss(o.weights, "query" if o.kind == "lft" else "union", log=o.log)
    return FinalQueryLoss()


def build_proto_head(cfg: Config, learners: dict):
    """``init.proto``: Proto-MAML's per-task head from the support prototypes (else None)."""
    if not cfg.init.proto:
        return None
    if len(learners) > 1:
        raise ConfigError("init.proto (Proto-MAML) builds the head of one architecture: use one task family")
    from innerloop.inits.proto import ProtoHead, output_layer

    learner = next(iter(learners.values()))
    if learner.loss_name != "cross_entropy":
        raise ConfigError("init.proto (Proto-MAML) is for classification (prototypes of classes): use it with a "
                          "cross-entropy task, or init.proto = false")
    return ProtoHead(output_layer(learner.model, cfg.init.proto_head), cfg.init.proto_detach)


def build_inner_loss(cfg: Config, learners: dict, spec: dict):
    """``objective.inner_loss = "metal"``: MeTAL's learned inner loss for the one architecture (else None)."""
    if cfg.objective.inner_loss == "task":
        return None
    if len(learners) > 1:
        raise ConfigError("objective.inner_loss = 'metal' reads each layer's mean, so it belongs to one architecture: "
                          "use one task family, or objective.inner_loss = 'task'")
    from innerloop.objectives.learned_loss import LearnedInnerLoss

    learner = next(iter(learners.values()))
    classification = learner.loss_name == "cross_entropy"
    if classification:
        out_dim = int(spec.get("ways") or cfg.task.ways)
    else:
        last = [m for m in learner.model.modules() if isinstance(m, torch.nn.Linear)]
        if not last:
            raise ConfigError("objective.inner_loss = 'metal' needs a model whose output layer is an nn.Linear "
                              "(it reads the outputs' width)")
        out_dim = last[-1].out_features
    return LearnedInnerLoss(len(learner.inner), out_dim, cfg.inner.steps, classification,
                            cfg.objective.metal_transductive, cfg.objective.metal_init)


def build(cfg: Config) -> tuple[SinusoidTasks | EpisodeTasks | TaskMixture, MetaLearner]:
    """Everything a training run needs, on ``cfg.train.device`` in ``cfg.train.dtype``, seeded (torch, and numpy's
    and Python's global generators too: a checkpoint stores all three, so a resumed run matches a fresh one)."""
    import random

    import numpy as np

    torch.manual_seed(cfg.train.seed)
    np.random.seed(cfg.train.seed % 2**32)
    random.seed(cfg.train.seed)
    tasks = build_tasks(cfg)
    return tasks, build_meta(cfg, spec_of(tasks))


def build_meta(cfg: Config, spec: dict) -> MetaLearner:
    """The meta-learner of ``cfg`` for tasks described by ``spec`` (:func:`spec_of`): no data is read."""
    device = torch.device(cfg.train.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device = 'cuda' but no CUDA device is available: use --set train.device=cpu")
    if "sources" in spec:
        built = {name: build_source_learner(cfg, name, src) for name, src in spec["sources"].items()}
        models = {k: v[0] for k, v in built.items()}
        learners = {k: v[1] for k, v in built.items()}
        inits = {k: build_init(cfg, mdl) for k, mdl in models.items()}
        first = next(iter(built))
        rule = build_rule(cfg, learners[first], models[first])
        learner_arg, init_arg = learners, inits
    else:
        model, loss = build_model(cfg, spec)
        learner = Learner(model, loss, adapt_norm=cfg.model.adapt_norm,
                          variable_ways=bool(spec.get("variable_ways")))
        models, learner_arg, init_arg = {"model": model}, learner, build_init(cfg, model)
        rule = build_rule(cfg, learner, model)
        learners = {"model": learner}
    objective = build_objective(cfg)
    attenuator = None
    if cfg.init.attenuate:
        if len(learners) > 1:
            raise ConfigError("init.attenuate (L2F) needs one architecture: it has one output per layer")
        attenuator = Attenuator(next(iter(learners.values())).inner, cfg.init.attenuate_detach)
    meta = MetaLearner(
        learner_arg, init_arg, rule, build_oracle(cfg), objective, cfg.inner.steps,
        executor=cfg.train.executor, checkpoint=cfg.train.checkpoint_unroll, device=device,
        truncation=cfg.train.truncation, attenuator=attenuator, compile=cfg.train.compile,
        workers=cfg.train.workers, inner_loss=build_inner_loss(cfg, learners, spec),
        proto_head=build_proto_head(cfg, learners),
    )
    for mdl in models.values():
        mdl.to(device=device, dtype=DTYPES[cfg.train.dtype])
    meta.to(device=device, dtype=DTYPES[cfg.train.dtype])
    meta.config = cfg
    meta.test_steps = cfg.eval.steps if cfg.eval.steps is not None else cfg.inner.steps
    return meta
