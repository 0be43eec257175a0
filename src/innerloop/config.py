"""Experiment configuration: typed dataclasses, TOML files, ``--set key=value`` overrides.

Every mistake (unknown key, wrong type, impossible value, a key the task family does not use) raises
:class:`ConfigError` with a one-line message naming the fix; misspelt keys and config names get a "did you mean".

One source of truth for the settings: the dataclasses (sections, keys, types, defaults), :data:`KEY_DOCS` (what
each key means), :data:`CHOICES` and :data:`BOUNDS` (allowed values) and :data:`APPLIES_TO` (which task families
use a key). ``innerloop configs NAME`` and ``innerloop configs --keys`` (:mod:`innerloop.configs_cli`) print them.
Shipped configs live in ``configs/<group>/<name>.toml``; the first line of each is ``# <one-line description>``
(:func:`description`).
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import sys
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from innerloop.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class TaskConfig:
    """``[task]``: the task distribution: what each task's data is and how much of it there is."""

    family: str = "sinusoid"
    shots: int = 10
    query: int = 10
    eval_query: int = 100
    ways: int = 5
    dataset: str = "omniglot"
    root: str = ""
    train_split: str = "train"
    eval_split: str = "test"
    eval_dataset: str = ""
    eval_root: str = ""
    image_size: int = 0
    rotations: bool = True
    normalize: str = "none"
    sources: list[str] = field(default_factory=lambda: ["mnist"])
    eval_sources: list[str] = field(default_factory=list)
    holdout_classes: list[int] = field(default_factory=list)
    victims: str = ""
    uap_lambda: float = 0.05
    uap_kappa: float = 0.0
    amplitude: list[float] = field(default_factory=lambda: [0.1, 5.0])
    frequency: list[float] = field(default_factory=lambda: [0.8, 1.2])
    phase: list[float] = field(default_factory=lambda: [0.0, math.pi])
    x_range: list[float] = field(default_factory=lambda: [-5.0, 5.0])
    records: str = ""
    max_ways: int = 50
    max_support: int = 500
    max_query: int = 10
    channels: int = 3


@dataclass
class ModelConfig:
    """``[model]``: the base learner adapted to each task."""

    name: str = "mlp"
    hidden: list[int] = field(default_factory=lambda: [40, 40])
    activation: str = "relu"
    filters: int = 64
    norm: str = "batch"
    adapt_norm: bool = False


@dataclass
class InitConfig:
    """``[init]``: where each task's inner loop starts (theta_0)."""

    kind: str = "learned"
    seed: int = 104
    scheme: str = "xavier"
    std: float = 1e-4
    attenuate: bool = False
    attenuate_detach: bool = True
    proto: bool = False
    proto_head: str = ""
    proto_detach: bool = False


@dataclass
class RuleConfig:
    """``[rule]``: how each inner step updates the parameters."""

    kind: str = "sgd"
    lr: float = 0.01
    weight_decay: float = 5e-4
    generator_layers: int = 3
    inputs: str = "both"
    alpha: str = "adaptive"
    beta: str = "adaptive"
    alpha_granularity: str = "step_layer"
    beta_granularity: str = "step_layer"
    per_param_decay: bool = False
    detach_grad_input: bool = True
    form: str = "robust"
    bound: float = 2.0
    relative: bool = False
    schedule: str = "per_step"
    hidden: int = 20
    layers: int = 2
    preprocess: str = "log_sign"
    log_k: float = 5.0
    scale: float = 0.1
    bias: bool = True
    head_init_scale: float = 1.0
    max_update: float = 0.0
    descent: bool = False
    output: str = "additive"
    adam_range: float = 10.0


@dataclass
class OracleConfig:
    """``[oracle]``: what gradient the inner loop sees."""

    kind: str = "autograd"
    q: int = 20
    mu: float = 0.005
    directions: str = "gaussian"
    detach: bool = False
    noise: str = "keyed"
    antithetic: bool = False


@dataclass
class InnerConfig:
    """``[inner]``: the inner (adaptation) loop during meta-training."""

    steps: int = 5
    order: str = "second"


@dataclass
class ObjectiveConfig:
    """``[objective]``: the meta-objective that meta-training minimises."""

    kind: str = "final"
    msl_epochs: int = 15
    weights: str = "uniform"
    log: bool = False
    inner_loss: str = "task"
    metal_transductive: bool = True
    metal_init: str = "zero"


@dataclass
class TrainConfig:
    """``[train]``: meta-training: optimiser, budget, logging, hardware and safety stops."""

    iterations: int = 70000
    meta_batch: int = 25
    meta_lr: float = 1e-3
    lr_decay_every: int = 0
    lr_decay_rate: float = 1.0
    seed: int = 0
    epoch_length: int = 500
    log_every: int = 100
    checkpoint_every: int = 1000
    executor: str = "auto"
    checkpoint_unroll: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    clip_grad: float = 0.0
    max_bad_steps: int = 10
    divergence_factor: float = 1e4
    stall_windows: int = 5
    eval_every: int = 0
    truncation: int = 0
    horizon: int = 0
    compile: bool = False
    workers: int = 1


@dataclass
class EvalConfig:
    """``[eval]``: the evaluation on the fixed test tasks."""

    tasks: int = 600
    steps: int | None = None
    seed: int = 2020
    chunk: int = 100


@dataclass
class Config:
    """A whole experiment: one dataclass per TOML section; every key is documented in :data:`KEY_DOCS`."""

    task: TaskConfig = field(default_factory=TaskConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    init: InitConfig = field(default_factory=InitConfig)
    rule: RuleConfig = field(default_factory=RuleConfig)
    oracle: OracleConfig = field(default_factory=OracleConfig)
    inner: InnerConfig = field(default_factory=InnerConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: What every key means, one line each (the allowed values come from the field's type, :data:`CHOICES`,
#: :data:`BOUNDS` and :data:`APPLIES_TO`). The one source of ``innerloop configs NAME`` and ``--keys`` (the README's
#: key reference); a test checks that it covers every dataclass field and nothing else.
KEY_DOCS: dict[str, str] = {
    # [task]
    "task.family": "sinusoid regression, episodes (N-way K-shot images), records (Meta-Dataset), incongruous (LFT: "
                   "sources with their own models) or uap (LFT: universal perturbations)",
    "task.shots": "support examples per task: points per sinusoid, images per class for image tasks (>= 1; records: "
                  "0 = variable)",
    "task.query": "query examples per task during meta-training (per class for image tasks; >= 1; records: 0 = "
                  "variable, train and test)",
    "task.eval_query": "query examples per evaluation task (per class for image tasks; >= 1)",
    "task.ways": "classes per episode, N-way (>= 2; records: 0 = variable, Meta-Dataset's draw)",
    "task.dataset": "image dataset: omniglot, mnist, cifar10, miniimagenet, tieredimagenet, cub or folder "
                    "(a folder of class folders; see innerloop data)",
    "task.root": "the dataset's folder; \"\" = $INNERLOOP_DATA/<dataset>",
    "task.train_split": "split meta-trained on, e.g. train or trainval",
    "task.eval_split": "split evaluated on, e.g. test or val",
    "task.eval_dataset": "cross-domain evaluation dataset, e.g. cub; \"\" = task.dataset",
    "task.eval_root": "task.eval_dataset's folder; \"\" = $INNERLOOP_DATA/<eval_dataset>",
    "task.image_size": "image side in pixels; 0 = the dataset's default (Omniglot 28, miniImageNet 84, ...)",
    "task.rotations": "Omniglot: its 90/180/270-degree rotations are extra classes",
    "task.normalize": "input normalisation: none, imagenet (ALFA's miniImageNet mean and std) or signed (2 x - 1, "
                      "Meta-Dataset's)",
    "task.sources": "training sources: mnist, cifar10 (incongruous also omniglot, sinusoid) with their own models; "
                    "records: record folders under task.records",
    "task.eval_sources": "evaluation sources; [] = task.sources",
    "task.holdout_classes": "mnist/cifar10 sources: these class ids never appear in meta-training and are the only "
                            "classes of the test tasks (held-out problems); [] = every class in both",
    "task.victims": "folder holding <source>/victim.pt (innerloop victim train); \"\" = $INNERLOOP_VICTIMS, "
                    "else ./victims",
    "task.uap_lambda": "weight of ||delta||_2^2 in the task loss (>= 0; spec 12: 0.01-0.1, inferred)",
    "task.uap_kappa": "C&W confidence margin: the loss reaches 0 only kappa nats past the boundary (>= 0)",
    "task.amplitude": "amplitude range [low, high] of y = A sin(w x + phi)",
    "task.frequency": "frequency range [low, high] (w)",
    "task.phase": "phase range [low, high] in radians (phi)",
    "task.x_range": "input range [low, high] of the points",
    "task.records": "folder holding one Meta-Dataset record folder per source (innerloop data to-records); \"\" = "
                    "$INNERLOOP_RECORDS",
    "task.max_ways": "records: the model's outputs, the most classes an episode may have (Meta-Dataset: 50)",
    "task.max_support": "records, variable shots: the largest support set (Meta-Dataset: 500)",
    "task.max_query": "records, variable query: the most query images per class (Meta-Dataset: 10)",
    "task.channels": "records: image channels, 3 (RGB; grayscale replicated) or 1 (grayscale)",
    # [model]
    "model.name": "base learner: mlp, conv4 (4-CONV), resnet12 (ALFA's) or lenet5; the image models need image tasks",
    "model.hidden": "mlp: hidden layer sizes (each >= 1)",
    "model.activation": "hidden activation of mlp and conv4",
    "model.filters": "conv4 (and the CIFAR-10 CNN of incongruous tasks): filters per layer (>= 1)",
    "model.norm": "conv4 / resnet12 normalisation: batch (transductive, exact under vmap), torch (nn.BatchNorm2d: "
                  "the loop executor) or none",
    "model.adapt_norm": "the inner loop adapts the norm layers' affine parameters too (MAML, ALFA, MAML++: false)",
    # [init]
    "init.kind": "where each task starts: learned (MAML's meta-learned theta_0), fixed (drawn once, never trained) "
                 "or random (drawn fresh per task)",
    "init.seed": "fixed: the seed theta_0 is drawn from (ALFA's default 104)",
    "init.scheme": "fixed: xavier or model (the model's own init); random: torch, xavier, kaiming or normal",
    "init.std": "random with scheme = normal: the standard deviation (>= 0)",
    "init.attenuate": "L2F: task-conditioned layer-wise attenuation of theta_0",
    "init.proto": "Proto-MAML: each task's output layer starts at its support prototypes (weight 2 c_k, bias "
                  "-||c_k||^2, from the un-adapted backbone); classification only",
    "init.proto_head": "init.proto: the output layer's module name (empty: the model's last nn.Linear)",
    "init.proto_detach": "init.proto: the prototypes are constants (default false: the query loss also trains the "
                         "backbone through them, even under a first-order oracle)",
    "init.attenuate_detach": "L2F: the gradient embedding is a constant (L2F's code); false = the ALFA repository's "
                             "variant",
    # [rule]
    "rule.kind": "how to step: sgd (fixed rate), lslr (learned per-step per-layer rates), alfa (generated rate and "
                 "decay), alfa_shared (alfa for any architecture) or lstm (LSTM fine-tuner, LFT/L2O)",
    "rule.lr": "inner learning rate: sgd's rate, lslr's and alfa's initial alpha0, alfa_shared's initial rate",
    "rule.weight_decay": "alfa, alfa_shared: the decay starts at weight_decay * lr",
    "rule.generator_layers": "alfa: layers of the hyperparameter generator",
    "rule.inputs": "alfa: the generator's input: both (layer means of weights and gradients), weights or gradients",
    "rule.alpha": "alfa: learning rate: adaptive (generated x learned), fixed (learned, not generated) or off "
                  "(the constant lr)",
    "rule.beta": "alfa: weight decay: adaptive (generated x learned), fixed (learned, not generated) or off (none)",
    "rule.alpha_granularity": "alfa: one alpha per step and layer, per step (shared by layers) or per layer "
                              "(shared by steps)",
    "rule.beta_granularity": "alfa: one beta per step and layer, per step or per layer",
    "rule.per_param_decay": "alfa: a learned per-parameter weight decay (ALFA + random init); beta0 then starts at 1",
    "rule.detach_grad_input": "alfa, alfa_shared: the generator's gradient input is a constant (no second-order path through it)",
    "rule.form": "alfa: robust (default: starts as LSLR, bounded multipliers, positive rates, decay <= 1) or paper "
                 "(the authors' raw outputs)",
    "rule.bound": "alfa robust, alfa_shared: the generated multipliers stay within [1/bound, bound] (> 1)",
    "rule.relative": "alfa_shared: the generator's outputs are centred over the tensors, so it only shares the rate out "
                     "and the learned base rate sets the scale",
    "rule.schedule": "alfa: per_step (post-multipliers per step; past the trained steps the last is reused) or state "
                     "(one per layer; defined for any number of steps)",
    "rule.hidden": "lstm: hidden units per layer; alfa_shared: the generator's width (>= 1)",
    "rule.layers": "lstm: stacked LSTM layers (>= 1)",
    "rule.preprocess": "lstm: gradient input: log_sign (L2L's LogAndSign) or none (the raw gradient)",
    "rule.log_k": "lstm: LogAndSign's k",
    "rule.scale": "lstm: the update is scale * the LSTM head's output (rule.output = rate: the largest rate)",
    "rule.bias": "lstm: biases in the LSTM and its head (an untrained one then moves every coordinate)",
    "rule.head_init_scale": "lstm: the head's initial weights are multiplied by this",
    "rule.max_update": "lstm: rho > 0 caps each tensor's update softly at rho * its gradient's norm, so the rule "
                       "stops where the gradient vanishes (0: unbounded, the papers' form)",
    "rule.output": "lstm: additive (scale * head output, the papers' form), rate (scale * sigmoid(head) * gradient) "
                   "or adam (Adam's step at a learned rate, scaled per coordinate by the LSTM)",
    "rule.adam_range": "lstm, output = adam: the LSTM scales the learned base rate (from rule.scale) by a factor in "
                       "[1/r, r] per coordinate (>= 1)",
    "rule.descent": "lstm: drop the uphill component of each tensor's update along its gradient, so every step "
                    "descends to first order (false: the papers' form)",
    # [oracle]
    "oracle.kind": "autograd (exact gradients) or zo (zeroth order: estimated from loss values only)",
    "oracle.q": "zo: random directions per estimate (>= 1)",
    "oracle.mu": "zo: smoothing radius (> 0)",
    "oracle.directions": "zo: gaussian, unit-sphere, or orthogonal (q <= parameters) directions",
    "oracle.antithetic": "zo: central differences f(x+mu u) - f(x-mu u): 2q + 1 queries per step instead of q + 1",
    "oracle.detach": "zo: the estimate is a constant in the meta-gradient (no graph through the q + 1 queries)",
    "oracle.noise": "zo: keyed (directions keyed by batch, task and step: the same for any batching or sharding) or "
                    "stream (one global generator)",
    # [inner]
    "inner.steps": "inner (adaptation) steps per task in meta-training (>= 1)",
    "inner.order": "second (backpropagate through the inner gradients) or first (first-order approximation)",
    # [objective]
    "objective.kind": "final (query loss after the last step), msl (MAML++ multi-step loss), lft (validation loss "
                      "along the trajectory) or l2o (training loss along the trajectory)",
    "objective.msl_epochs": "msl: epochs over which the per-step weights anneal to the final step",
    "objective.weights": "lft / l2o: per-step weights: uniform, increasing or final (the last step only)",
    "objective.log": "lft / l2o: sum the log of each step's loss, so task families with different loss scales "
                     "weigh alike",
    "objective.inner_loss": "the loss the inner loop descends: task (the task loss) or metal (plus a meta-learned "
                            "loss of the task state, one network per step: MeTAL; needs inner.order = second)",
    "objective.metal_transductive": "metal: also a loss of the unlabelled query inputs' outputs (MeTAL's query term)",
    "objective.metal_init": "metal: zero (the learned loss starts at 0: training starts from the task loss) or "
                            "random (the authors' initialisation)",
    # [train]
    "train.iterations": "meta-training iterations (>= 0; 0 = an untrained baseline: evaluation only)",
    "train.meta_batch": "tasks per meta-update (>= 1)",
    "train.meta_lr": "Adam's meta learning rate (> 0)",
    "train.lr_decay_every": "staircase decay of the meta learning rate: times lr_decay_rate every this many iterations "
                            "(0 = off; Meta-Dataset's)",
    "train.lr_decay_rate": "factor of each staircase decay, in (0, 1]",
    "train.seed": "seed of the training tasks, initialisations and random directions",
    "train.epoch_length": "iterations per epoch (the msl schedule)",
    "train.log_every": "iterations per metrics.jsonl line (>= 1)",
    "train.checkpoint_every": "iterations between checkpoints (>= 1)",
    "train.executor": "auto (vmap when the model allows it), vmap (tasks batched) or loop (one task after another)",
    "train.checkpoint_unroll": "0 = off; c = keep every c-th inner state and recompute the rest (memory for time)",
    "train.device": "cpu, cuda, cuda:N or mps",
    "train.dtype": "floating-point precision",
    "train.clip_grad": "0 = off; c = clamp every meta-gradient entry to [-c, c]",
    "train.max_bad_steps": "consecutive non-finite steps before training stops (the last good checkpoint is kept)",
    "train.divergence_factor": "stop when a logged meta-loss rises above the best one by this x |best| (0 = off)",
    "train.stall_windows": "stop when this many logged meta-losses in a row agree to 1e-4 relative (0 = off)",
    "train.eval_every": "0 = off; N = evaluate on the fixed test tasks every N iterations (metrics.jsonl)",
    "train.truncation": "0 = off; N = truncated backprop every N inner steps (one meta-update per segment)",
    "train.horizon": "0 = unroll inner.steps; H > inner.steps = each meta-iteration unrolls a length drawn from "
                     "inner.steps..H (rule state carried across train.truncation segments)",
    "train.compile": "torch.compile the batched (vmap) meta-loss: ~2-3x on small MLPs, ~40 s to compile once",
    "train.workers": "loop executor: tasks in this many threads, one intra-op thread each (0 = one per CPU core)",
    # [eval]
    "eval.tasks": "fixed test tasks evaluated (>= 1)",
    "eval.steps": "inner steps at test time; unset = inner.steps",
    "eval.seed": "seed of the fixed test tasks (the same for every method)",
    "eval.chunk": "test tasks evaluated at once: memory against speed (>= 1)",
}

#: what ``task.sources`` may name for ``task.family = "incongruous"`` (each with its own base learner)
MIXTURE_SOURCES = ("mnist", "cifar10", "omniglot", "sinusoid")

#: ``task.*`` keys that only some task families use: setting one to a non-default value for another family is an
#: error (:func:`check_family`).
APPLIES_TO: dict[str, tuple[str, ...]] = {
    **{f"task.{k}": ("episodes",) for k in ("dataset", "root", "train_split", "eval_split", "eval_dataset",
                                            "eval_root", "rotations")},
    **{f"task.{k}": ("episodes", "records") for k in ("image_size", "normalize")},
    **{f"task.{k}": ("records",) for k in ("records", "max_ways", "max_support", "max_query", "channels")},
    "task.ways": ("episodes", "records", "incongruous", "uap"),
    **{f"task.{k}": ("incongruous", "uap", "records") for k in ("sources", "eval_sources")},
    "task.holdout_classes": ("incongruous",),
    **{f"task.{k}": ("uap",) for k in ("victims", "uap_lambda", "uap_kappa")},
    **{f"task.{k}": ("sinusoid", "incongruous") for k in ("amplitude", "frequency", "phase", "x_range")},
}

#: The values a key may take (checked by :func:`validate`; listed by ``innerloop configs``).
CHOICES = {
    "task.family": ("sinusoid", "episodes", "records", "incongruous", "uap"),
    "task.normalize": ("none", "imagenet", "signed"),
    "task.channels": (1, 3),
    "model.name": ("mlp", "conv4", "resnet12", "lenet5"),
    "model.norm": ("batch", "torch", "none"),
    "model.activation": ("relu", "tanh", "leaky_relu"),
    "init.kind": ("learned", "fixed", "random"),
    "init.scheme": ("xavier", "model", "torch", "kaiming", "normal"),
    "rule.kind": ("sgd", "lslr", "alfa", "alfa_shared", "lstm"),
    "rule.preprocess": ("log_sign", "none"),
    "rule.output": ("additive", "rate", "adam"),
    "rule.generator_layers": (3, 2),
    "rule.form": ("paper", "robust"),
    "rule.schedule": ("per_step", "state"),
    "rule.inputs": ("both", "weights", "gradients"),
    "rule.alpha": ("adaptive", "fixed", "off"),
    "rule.beta": ("adaptive", "fixed", "off"),
    "rule.alpha_granularity": ("step_layer", "step", "layer"),
    "rule.beta_granularity": ("step_layer", "step", "layer"),
    "oracle.kind": ("autograd", "zo"),
    "oracle.directions": ("gaussian", "sphere", "orthogonal"),
    "oracle.noise": ("keyed", "stream"),
    "objective.weights": ("uniform", "increasing", "final"),
    "inner.order": ("second", "first"),
    "objective.kind": ("final", "msl", "lft", "l2o"),
    "objective.inner_loss": ("task", "metal"),
    "objective.metal_init": ("zero", "random"),
    "train.executor": ("auto", "vmap", "loop"),
    "train.dtype": ("float32", "float64"),
}


def _type_ok(value: Any, tp: Any) -> tuple[bool, Any]:
    """Check ``value`` against a dataclass field type; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(tp):
            if arg is type(None):
                if value is None:
                    return True, None
                continue
            ok, v = _type_ok(value, arg)
            if ok:
                return True, v
        return False, value
    if origin is list:
        (inner,) = typing.get_args(tp)
        if not isinstance(value, list):
            return False, value
        out = []
        for item in value:
            ok, v = _type_ok(item, inner)
            if not ok:
                return False, value
            out.append(v)
        return True, out
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if tp is str:
        return isinstance(value, str), value
    return False, value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def sections() -> dict[str, list[str]]:
    """Every section and its keys, in declaration order: ``{"task": ["family", "shots", ...], ...}``."""
    return {f.name: [g.name for g in dataclasses.fields(f.default_factory)] for f in dataclasses.fields(Config)}


def all_keys() -> list[str]:
    """Every ``section.key``, in declaration order."""
    return [f"{s}.{k}" for s, keys in sections().items() for k in keys]


def either(names: list[str], fmt: str = "'{}'") -> str:
    """``'a'``, ``'a' or 'b'``, ``'a', 'b' or 'c'``."""
    quoted = [fmt.format(n) for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]


def suggest_key(section: str, key: str) -> list[str]:
    """The keys a misspelt ``section.key`` most likely meant: a close key of the same section, else the same key in
    other sections (``train.steps`` -> ``inner.steps``, ``eval.steps``), else the closest ``section.key``."""
    known = sections()
    if section in known:
        close = difflib.get_close_matches(key, known[section], n=1, cutoff=0.7)
        if close:
            return [f"{section}.{close[0]}"]
    elsewhere = [f"{s}.{key}" for s, keys in known.items() if key in keys and s != section]
    return elsewhere or difflib.get_close_matches(f"{section}.{key}", all_keys(), n=1, cutoff=0.7)


def apply(cfg: Config, data: dict[str, Any], where: str = "config") -> Config:
    """Merge a nested dict (e.g. parsed TOML) into ``cfg``, validating keys and types."""
    hints = typing.get_type_hints(Config)
    for section, values in data.items():
        if section not in hints:
            guess = [k for key in (values if isinstance(values, dict) else {}) for k in suggest_key(section, key)]
            close = difflib.get_close_matches(section, list(hints), n=1, cutoff=0.6)
            hint = (f"did you mean {either(guess[:1])}? " if guess and guess[0].split(".")[0] in close else
                    f"did you mean [{close[0]}]? " if close else "")
            valid = f"valid sections: {', '.join(hints)}"
            raise ConfigError(f"unknown section [{section}] in {where}; " + (f"{hint}({valid})" if hint else valid))
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {where} must be a table of keys, got {values!r}")
        sub = getattr(cfg, section)
        sub_hints = typing.get_type_hints(type(sub))
        for key, value in values.items():
            if key not in sub_hints:
                guess = suggest_key(section, key)
                if guess:
                    raise ConfigError(f"unknown key '{section}.{key}' in {where}; did you mean {either(guess)}? "
                                      "('innerloop configs --keys' lists every key)")
                raise ConfigError(
                    f"unknown key '{section}.{key}' in {where}; valid keys: {', '.join(sub_hints)}"
                )
            ok, v = _type_ok(value, sub_hints[key])
            if not ok:
                raise ConfigError(
                    f"'{section}.{key}' in {where} must be {_type_name(sub_hints[key])}, got {value!r}"
                )
            setattr(sub, key, v)
    validate(cfg)
    return cfg


#: ``(low, high)`` bounds of numeric settings (inclusive; None = unbounded) beyond "finite": a meta-learning rate
#: of 1e38 overflows Adam's float32 state, a meta-batch of 1e12 asks the allocator for terabytes
BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "train.meta_lr": (None, 10.0),
    "train.clip_grad": (0.0, None),
    "train.divergence_factor": (0.0, None),
    "train.meta_batch": (None, 100_000),
    "inner.steps": (None, 100_000),
    "rule.lr": (None, 1e6),
    "oracle.mu": (None, 1e6),
    "init.std": (0.0, 1e6),
}


def _numbers(cfg: Config):
    """``(key, value)`` of every float setting (list entries included)."""
    for section in dataclasses.fields(cfg):
        sub = getattr(cfg, section.name)
        for f in dataclasses.fields(sub):
            value = getattr(sub, f.name)
            for v in (value if isinstance(value, list) else [value]):
                if isinstance(v, float):
                    yield f"{section.name}.{f.name}", v


def check_device(name: str) -> None:
    """``train.device`` names a device this machine has: 'cpu', 'cuda', 'cuda:N' (N < the GPU count) or 'mps'."""
    import torch

    hint = "use 'cpu', 'cuda' or 'cuda:N'"
    try:
        dev = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"train.device = {name!r} is not a device name: {hint}") from None
    if dev.type == "cpu":
        return
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"train.device = {name!r} but no CUDA device is available: use --set train.device=cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(f"train.device = {name!r} but this machine has {torch.cuda.device_count()} CUDA "
                              f"device(s): use cuda:0 to cuda:{torch.cuda.device_count() - 1}")
        return
    if dev.type == "mps":
        if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
            raise ConfigError(f"train.device = {name!r} but MPS is not available here: use --set train.device=cpu")
        return
    raise ConfigError(f"train.device = {name!r} is not supported: {hint}")


def validate(cfg: Config) -> None:
    """Impossible settings, caught before any training starts."""
    for key, v in _numbers(cfg):
        if not math.isfinite(v):
            raise ConfigError(f"'{key}' = {v} must be a finite number")
    for key, (low, high) in BOUNDS.items():
        section, name = key.split(".")
        v = getattr(getattr(cfg, section), name)
        if (low is not None and v < low) or (high is not None and v > high):
            rng = f">= {low}" if high is None else f"<= {high}" if low is None else f"between {low} and {high}"
            raise ConfigError(f"'{key}' = {v} is out of range: it must be {rng}")
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"'{key}' = {value!r} is not one of {list(allowed)}")
    t, tr = cfg.task, cfg.train
    for name in ("amplitude", "frequency", "phase", "x_range"):
        if len(getattr(t, name)) != 2:
            raise ConfigError(f"'task.{name}' must be a [low, high] pair, got {getattr(t, name)}")
    least = 0 if t.family == "records" else 1  # records: 0 = Meta-Dataset's variable draw
    if t.shots < least or t.query < least or t.eval_query < 1:
        raise ConfigError("task.shots, task.query and task.eval_query must all be >= 1" + (
            " (records: task.shots and task.query >= 0, 0 = variable)" if least == 0 else ""))
    if cfg.inner.steps < 1:
        raise ConfigError(f"inner.steps = {cfg.inner.steps}: {cfg.rule.kind} needs at least 1 inner step")
    if t.uap_lambda < 0 or t.uap_kappa < 0:
        raise ConfigError(f"task.uap_lambda and task.uap_kappa must be >= 0, got {t.uap_lambda} and {t.uap_kappa}")
    if cfg.eval.steps is not None and cfg.eval.steps < 0:
        raise ConfigError("eval.steps must be >= 0 (or omitted to use inner.steps)")
    if tr.iterations < 0 or tr.meta_batch < 1 or tr.log_every < 1 or tr.checkpoint_every < 1:
        raise ConfigError("train.iterations >= 0, train.meta_batch >= 1, train.log_every >= 1, train.checkpoint_every >= 1")
    if tr.lr_decay_every < 0 or not 0 < tr.lr_decay_rate <= 1:
        raise ConfigError(f"train.lr_decay_every = {tr.lr_decay_every} must be >= 0 and train.lr_decay_rate = "
                          f"{tr.lr_decay_rate} in (0, 1]")
    if not tr.meta_lr > 0:
        raise ConfigError(f"train.meta_lr must be > 0, got {tr.meta_lr}")
    if cfg.eval.tasks < 1 or cfg.eval.chunk < 1:
        raise ConfigError("eval.tasks and eval.chunk must be >= 1")
    if cfg.objective.log and cfg.objective.kind not in ("lft", "l2o"):
        raise ConfigError(f"objective.log applies to objective.kind = lft or l2o, not {cfg.objective.kind!r} "
                          "(set objective.log = false)")
    if cfg.objective.inner_loss == "metal" and (
            (cfg.oracle.kind == "autograd" and cfg.inner.order == "first") or (cfg.oracle.kind == "zo" and cfg.oracle.detach)):
        raise ConfigError("objective.inner_loss = 'metal' learns through the inner gradients, which a first-order "
                          "(or detached zo) oracle cuts: set inner.order = 'second' (or oracle.detach = false)")
    if cfg.init.kind in ("fixed", "random") and cfg.rule.kind == "sgd" and not cfg.init.attenuate and tr.iterations > 0 \
            and cfg.objective.inner_loss == "task":
        raise ConfigError(f"init.kind = '{cfg.init.kind}' with rule.kind = 'sgd' has nothing to meta-learn: use rule.kind = 'alfa' or 'lstm' (or train.iterations = 0 for an untrained baseline)")
    if cfg.init.kind == "fixed" and cfg.init.scheme not in ("xavier", "model"):
        raise ConfigError(f"init.scheme = '{cfg.init.scheme}' is for init.kind = 'random'; a fixed init takes 'xavier' or 'model'")
    if cfg.init.kind == "random" and cfg.init.scheme not in ("torch", "xavier", "kaiming", "normal"):
        raise ConfigError(f"init.scheme = '{cfg.init.scheme}' is for init.kind = 'fixed'; a random init takes 'torch', 'xavier', 'kaiming' or 'normal'")
    if cfg.oracle.q < 1 or not cfg.oracle.mu > 0:
        raise ConfigError("oracle.q must be >= 1 and oracle.mu > 0")
    if tr.truncation < 0:
        raise ConfigError("train.truncation must be >= 0")
    if tr.horizon and tr.horizon < cfg.inner.steps:
        raise ConfigError(f"train.horizon = {tr.horizon} must be 0 (off) or >= inner.steps = {cfg.inner.steps}")
    if tr.horizon and tr.checkpoint_unroll:
        raise ConfigError("train.horizon draws the unroll length per meta-iteration: set train.checkpoint_unroll = 0 "
                          "(use train.truncation to bound memory)")
    if t.family in ("incongruous", "uap"):
        known = ("mnist", "cifar10") if t.family == "uap" else MIXTURE_SOURCES
        for name in [*t.sources, *t.eval_sources]:
            if name not in known:
                raise ConfigError(f"task source {name!r} is not one of {list(known)}")
        if t.holdout_classes:
            bad = [c for c in t.holdout_classes if not 0 <= c <= 9]
            if bad or len(set(t.holdout_classes)) != len(t.holdout_classes):
                raise ConfigError(f"task.holdout_classes = {t.holdout_classes}: distinct class ids in 0..9 (MNIST digits, "
                                  "CIFAR-10 classes)")
            if not {"mnist", "cifar10"} & set([*t.sources, *t.eval_sources]):
                raise ConfigError("task.holdout_classes applies to the mnist and cifar10 sources, and there is neither")
            if len(t.holdout_classes) < t.ways or 10 - len(t.holdout_classes) < t.ways:
                raise ConfigError(f"task.holdout_classes = {t.holdout_classes} leaves {10 - len(t.holdout_classes)} "
                                  f"training and {len(t.holdout_classes)} test classes: each needs task.ways = {t.ways}")
        if not t.sources:
            raise ConfigError("task.sources is empty: name at least one source, e.g. [\"mnist\"]")
        if len(set(t.sources) | set(t.eval_sources)) > 1 and cfg.init.kind != "random":
            raise ConfigError(
                f"init.kind = '{cfg.init.kind}' cannot serve several sources (different architectures/sizes): a "
                "meta-learned initialisation belongs to one of them, so MAML does not apply; use init.kind = 'random' "
                "with a coordinate-wise rule (rule.kind = 'lstm')"
            )
        if len(set(t.sources) | set(t.eval_sources)) > 1 and cfg.rule.kind in ("alfa", "lslr"):
            raise ConfigError(f"rule.kind = '{cfg.rule.kind}' has per-layer meta-parameters for one architecture; "
                              "incongruous sources need a shape-agnostic rule: 'lstm', 'alfa_shared' or 'sgd'")
    if t.family == "records":
        if t.ways != 0 and not 2 <= t.ways <= t.max_ways:
            raise ConfigError(f"task.ways = {t.ways}: records episodes take 0 (variable) or 2..task.max_ways "
                              f"({t.max_ways}) classes")
        if t.max_ways < 2 or t.max_support < t.max_ways or t.max_query < 1:
            raise ConfigError(f"task.max_ways = {t.max_ways}, task.max_support = {t.max_support}, task.max_query = "
                              f"{t.max_query}: need max_ways >= 2, max_support >= max_ways (one support image per "
                              "class) and max_query >= 1")
        if not t.sources:
            raise ConfigError("task.sources is empty: name at least one record source, e.g. [\"omniglot\"]")
    elif t.family in ("episodes", "incongruous", "uap"):
        if t.ways < 2:
            raise ConfigError(f"task.ways = {t.ways}: classification episodes need at least 2 classes")
    elif cfg.model.name != "mlp":  # sinusoid
        raise ConfigError(f"model.name = '{cfg.model.name}' takes images: use task.family = 'episodes' (sinusoid tasks use 'mlp')")
    if cfg.model.filters < 1:
        raise ConfigError(f"model.filters must be >= 1, got {cfg.model.filters}")
    if cfg.model.name == "mlp" and any(h < 1 for h in cfg.model.hidden):
        raise ConfigError(f"model.hidden sizes must be >= 1, got {cfg.model.hidden}")
    check_device(tr.device)


def parse_override(text: str) -> tuple[str, str, Any]:
    """``section.key=value`` -> (section, key, value); the value is parsed as TOML, else a string."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: write it as section.key=value, e.g. --set inner.steps=1")
    path, raw = text.split("=", 1)
    if path.count(".") != 1:
        raise ConfigError(f"--set {text!r}: the key must be section.key, e.g. train.iterations")
    section, key = path.strip().split(".")
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw
    return section, key, value


def resolve_path(name: str) -> Path:
    """A config file path, or a shipped config name such as ``sinusoid/alfa-maml``; an unknown name is a one-line
    :class:`ConfigError` suggesting the closest shipped names."""
    p = Path(name)
    if p.is_file():
        return p
    stem = name[:-5] if name.endswith(".toml") else name
    shipped = CONFIG_DIR / f"{stem}.toml"
    if shipped.is_file():
        return shipped
    if stem and (CONFIG_DIR / stem).is_dir():
        inside = [n for n in list_shipped() if n.startswith(stem.rstrip("/") + "/")]
        listed = f"one of {either(inside)}" if len(inside) <= 8 else f"one of its {len(inside)}, e.g. {either(inside[:3])}"
        raise ConfigError(f"{name!r} is a folder of shipped configs: name {listed} ('innerloop configs' lists all)")
    if p.is_dir():
        raise ConfigError(f"{name} is a folder, not a config file: give a TOML file or a shipped config name "
                          "('innerloop configs' lists them)")
    guess = suggest_config(name)
    hint = f"; did you mean {either(guess)}?" if guess else ""
    raise ConfigError(f"unknown config {name!r}: no config file or shipped config by that name{hint} "
                      "('innerloop configs' lists all)")


def suggest_config(name: str) -> list[str]:
    """The shipped configs a mistyped ``name`` most likely meant (up to 3; [] if none is close). A bare name such
    as ``alfa-maml`` matches the shipped configs of that name in every folder."""
    shipped = list_shipped()
    stem = (name[:-5] if name.endswith(".toml") else name).replace("\\", "/").strip("/")
    tail = [n for n in shipped if stem.endswith("/" + n)]  # a path to a shipped file from another folder
    if tail:
        return tail[:1]
    if "/" not in stem:
        by_base: dict[str, list[str]] = {}
        for n in shipped:
            by_base.setdefault(n.rsplit("/", 1)[-1], []).append(n)
        close = difflib.get_close_matches(stem, list(by_base), n=1, cutoff=0.6)
        return by_base[close[0]][:3] if close else []
    return difflib.get_close_matches(stem, shipped, n=1, cutoff=0.6)


def list_shipped() -> list[str]:
    """The names of the shipped configs (``sinusoid/maml``, ...), sorted."""
    return sorted(p.relative_to(CONFIG_DIR).with_suffix("").as_posix() for p in CONFIG_DIR.rglob("*.toml"))


def description(path: str | Path) -> str:
    """A config file's one-line description: its first line when that is a ``# ...`` comment, else "".

    Convention of the shipped configs (a test checks every one has it): line 1 is ``# <what it is, one line>``,
    further comment lines give the details.
    """
    try:
        with open(path, encoding="utf-8") as f:
            first = f.readline().strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return first.lstrip("#").strip() if first.startswith("#") else ""


def read_toml(path: Path) -> dict[str, Any]:
    """Parse a TOML file; unreadable, non-UTF-8 or malformed text is a one-line :class:`ConfigError`."""
    try:
        return tomllib.loads(Path(path).read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path} is not UTF-8 text (byte {e.start}): fix or replace the file") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path} is not valid TOML ({e}); fix the file") from None
    except OSError as e:
        raise ConfigError(f"cannot read {path} ({e.strerror or e}): check the path and its permissions") from None


def _keys_in(data: dict[str, Any]) -> list[str]:
    """The ``section.key`` names a nested dict sets."""
    return [f"{s}.{k}" for s, values in data.items() if isinstance(values, dict) for k in values]


def check_family(cfg: Config, explicit: dict[str, str]) -> None:
    """A ``task.*`` key that ``cfg``'s task family does not use (:data:`APPLIES_TO`), set explicitly (``explicit``:
    key -> where it was set) to a value other than its default, is a one-line :class:`ConfigError`: the setting
    would be silently ignored."""
    default = Config()
    for key, where in explicit.items():
        families = APPLIES_TO.get(key)
        if families is None or cfg.task.family in families:
            continue
        section, name = key.split(".")
        if getattr(getattr(cfg, section), name) == getattr(getattr(default, section), name):
            continue
        allowed = either(list(families), fmt='"{}"')
        raise ConfigError(f"{key} applies to task.family = {allowed}, but this config has task.family = "
                          f'"{cfg.task.family}": remove {key} from {where} (or change task.family)')


def load(name: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> Config:
    """Defaults <- config file ``name`` <- ``data`` <- ``--set`` overrides; then :func:`validate` and
    :func:`check_family` (over the keys set explicitly in any layer)."""
    cfg = Config()
    explicit: dict[str, str] = {}
    if name is not None:
        path = resolve_path(name)
        table = read_toml(path)
        apply(cfg, table, where=str(path))
        explicit.update(dict.fromkeys(_keys_in(table), str(path)))
    if data:
        apply(cfg, data)
        explicit.update(dict.fromkeys(_keys_in(data), "the config data"))
    nested: dict[str, dict[str, Any]] = {}
    for text in overrides or []:
        section, key, value = parse_override(text)
        nested.setdefault(section, {})[key] = value
    if nested:
        apply(cfg, nested, where="--set")
        explicit.update(dict.fromkeys(_keys_in(nested), "--set"))
    validate(cfg)
    check_family(cfg, explicit)
    return cfg


def toml_value(v: Any) -> str:
    """One setting's value as a TOML literal (the subset of TOML our types need)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v)


def to_toml(cfg: Config) -> str:
    """Serialise a config (the subset of TOML our types need)."""
    lines = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is not None:
                lines.append(f"{k} = {toml_value(v)}")
        lines.append("")
    return "\n".join(lines)
