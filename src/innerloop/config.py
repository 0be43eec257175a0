"""Experiment configuration: typed dataclasses, TOML files, ``--set key=value`` overrides.

Every mistake (unknown key, wrong type, impossible value) raises :class:`ConfigError` with a
one-line message naming the fix.
"""

from __future__ import annotations

import dataclasses
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
    family: str = "sinusoid"  # sinusoid | episodes (N-way K-shot classification)
    shots: int = 10
    query: int = 10  # query points (per class for episodes) per task during meta-training
    eval_query: int = 100  # query points (per class for episodes) per evaluation task
    # episodes
    ways: int = 5
    dataset: str = "omniglot"  # omniglot | mnist | cifar10 | miniimagenet | tieredimagenet | cub | folder
    root: str = ""  # dataset folder; "" = $INNERLOOP_DATA/<dataset>
    train_split: str = "train"
    eval_split: str = "test"
    eval_dataset: str = ""  # cross-domain evaluation (e.g. "cub"); "" = the training dataset
    eval_root: str = ""  # its folder; "" = $INNERLOOP_DATA/<eval_dataset>
    image_size: int = 0  # 0 = the dataset's default (Omniglot 28, miniImageNet 84, ...)
    rotations: bool = True  # Omniglot: 90/180/270-degree rotations as extra classes
    normalize: str = "none"  # none | imagenet (ALFA's miniImageNet mean/std)
    # incongruous / uap: several sources (mnist, cifar10), each with its own base learner or perturbation
    sources: list[str] = field(default_factory=lambda: ["mnist"])  # meta-training sources
    eval_sources: list[str] = field(default_factory=list)  # [] = the training sources
    victims: str = ""  # uap: folder holding <source>/victim.pt; "" = $INNERLOOP_VICTIMS, else ./victims
    uap_lambda: float = 0.05  # uap: weight of ||delta||_2^2 in the task loss (spec 12: 0.01-0.1, inferred)
    uap_kappa: float = 0.0  # uap: C&W confidence margin: the loss reaches 0 only kappa nats past the boundary
    amplitude: list[float] = field(default_factory=lambda: [0.1, 5.0])
    frequency: list[float] = field(default_factory=lambda: [0.8, 1.2])
    phase: list[float] = field(default_factory=lambda: [0.0, math.pi])
    x_range: list[float] = field(default_factory=lambda: [-5.0, 5.0])


@dataclass
class ModelConfig:
    name: str = "mlp"  # mlp | conv4 | resnet12 | lenet5
    hidden: list[int] = field(default_factory=lambda: [40, 40])
    activation: str = "relu"
    filters: int = 64  # conv4
    norm: str = "batch"  # conv4 / resnet12: batch (vmap-exact) | torch | none
    adapt_norm: bool = False  # the inner loop adapts norm layers' affine parameters too (MAML/ALFA/MAML++: no)


@dataclass
class InitConfig:
    kind: str = "learned"  # learned | fixed | random (fresh per task)
    seed: int = 104  # fixed init: the seed theta_0 is drawn from (ALFA's default seed)
    scheme: str = "xavier"  # fixed: xavier | model; random: torch | xavier | kaiming | normal
    std: float = 1e-4  # random init with scheme = normal
    attenuate: bool = False  # L2F: task-conditioned layer-wise attenuation of theta_0
    attenuate_detach: bool = True  # L2F: the gradient embedding is a constant (L2F's code); False = ALFA repo's copy


@dataclass
class RuleConfig:
    kind: str = "sgd"  # sgd | lslr | alfa
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
    # lstm (coordinate-wise fine-tuner)
    hidden: int = 20
    layers: int = 2
    preprocess: str = "log_sign"  # log_sign | none
    log_k: float = 5.0
    scale: float = 0.1
    bias: bool = True
    head_init_scale: float = 1.0


@dataclass
class OracleConfig:
    kind: str = "autograd"  # autograd | zo
    q: int = 20  # zo: random directions per estimate
    mu: float = 0.005  # zo: smoothing
    directions: str = "gaussian"  # zo: gaussian | sphere
    detach: bool = False  # zo: the estimate is a constant in the meta-gradient (no graph through the q + 1 queries)
    noise: str = "keyed"  # zo: keyed (by batch salt, task, step: any batching/sharding) | stream (global generator)


@dataclass
class InnerConfig:
    steps: int = 5
    order: str = "second"  # second | first


@dataclass
class ObjectiveConfig:
    kind: str = "final"  # final | msl | lft | l2o
    msl_epochs: int = 15
    weights: str = "uniform"  # lft / l2o: uniform | increasing | final


@dataclass
class TrainConfig:
    iterations: int = 70000
    meta_batch: int = 25
    meta_lr: float = 1e-3
    seed: int = 0
    epoch_length: int = 500  # iterations per "epoch" (MSL schedule)
    log_every: int = 100
    checkpoint_every: int = 1000
    executor: str = "auto"  # auto | vmap | loop
    checkpoint_unroll: int = 0  # 0: off; c: keep every c-th inner state, recompute the rest
    device: str = "cpu"
    dtype: str = "float32"
    clip_grad: float = 0.0  # 0: off; else clamp every meta-gradient entry to [-c, c]
    max_bad_steps: int = 10  # consecutive non-finite steps before training stops
    divergence_factor: float = 1e4  # stop when a logged meta-loss rises above the best logged one by this x |best| (0: off)
    stall_windows: int = 5  # stop when this many consecutive logged meta-losses agree to 1e-4 relative (0: off)
    eval_every: int = 0  # 0: off; else evaluate on the fixed eval tasks every N iterations (metrics.jsonl)
    truncation: int = 0  # 0: off; else truncated backprop every N inner steps (one update per segment)
    compile: bool = False  # torch.compile the batched (vmap) meta-loss: ~2-3x on small MLPs, ~40 s to compile once
    workers: int = 1  # loop executor: tasks run in this many threads, one intra-op thread each (0 = one per CPU core)


@dataclass
class EvalConfig:
    tasks: int = 600
    steps: int | None = None  # None: the training inner steps
    seed: int = 2020
    chunk: int = 100


@dataclass
class Config:
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


CHOICES = {
    "task.family": ("sinusoid", "episodes", "incongruous", "uap"),
    "task.normalize": ("none", "imagenet"),
    "model.name": ("mlp", "conv4", "resnet12", "lenet5"),
    "model.norm": ("batch", "torch", "none"),
    "model.activation": ("relu", "tanh", "leaky_relu"),
    "init.kind": ("learned", "fixed", "random"),
    "init.scheme": ("xavier", "model", "torch", "kaiming", "normal"),
    "rule.kind": ("sgd", "lslr", "alfa", "lstm"),
    "rule.preprocess": ("log_sign", "none"),
    "oracle.kind": ("autograd", "zo"),
    "oracle.directions": ("gaussian", "sphere"),
    "oracle.noise": ("keyed", "stream"),
    "objective.weights": ("uniform", "increasing", "final"),
    "inner.order": ("second", "first"),
    "objective.kind": ("final", "msl", "lft", "l2o"),
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


def apply(cfg: Config, data: dict[str, Any], where: str = "config") -> Config:
    """Merge a nested dict (e.g. parsed TOML) into ``cfg``, validating keys and types."""
    hints = typing.get_type_hints(Config)
    for section, values in data.items():
        if section not in hints:
            raise ConfigError(f"unknown section [{section}] in {where}; valid sections: {', '.join(hints)}")
        if not isinstance(values, dict):
            raise ConfigError(f"[{section}] in {where} must be a table of keys, got {values!r}")
        sub = getattr(cfg, section)
        sub_hints = typing.get_type_hints(type(sub))
        for key, value in values.items():
            if key not in sub_hints:
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
    if t.shots < 1 or t.query < 1 or t.eval_query < 1:
        raise ConfigError("task.shots, task.query and task.eval_query must all be >= 1")
    if cfg.inner.steps < 1:
        raise ConfigError(f"inner.steps = {cfg.inner.steps}: {cfg.rule.kind} needs at least 1 inner step")
    if t.uap_lambda < 0 or t.uap_kappa < 0:
        raise ConfigError(f"task.uap_lambda and task.uap_kappa must be >= 0, got {t.uap_lambda} and {t.uap_kappa}")
    if cfg.eval.steps is not None and cfg.eval.steps < 0:
        raise ConfigError("eval.steps must be >= 0 (or omitted to use inner.steps)")
    if tr.iterations < 0 or tr.meta_batch < 1 or tr.log_every < 1 or tr.checkpoint_every < 1:
        raise ConfigError("train.iterations >= 0, train.meta_batch >= 1, train.log_every >= 1, train.checkpoint_every >= 1")
    if not tr.meta_lr > 0:
        raise ConfigError(f"train.meta_lr must be > 0, got {tr.meta_lr}")
    if cfg.eval.tasks < 1 or cfg.eval.chunk < 1:
        raise ConfigError("eval.tasks and eval.chunk must be >= 1")
    if cfg.init.kind in ("fixed", "random") and cfg.rule.kind == "sgd" and not cfg.init.attenuate and tr.iterations > 0:
        raise ConfigError(f"init.kind = '{cfg.init.kind}' with rule.kind = 'sgd' has nothing to meta-learn: use rule.kind = 'alfa' or 'lstm' (or train.iterations = 0 for an untrained baseline)")
    if cfg.init.kind == "fixed" and cfg.init.scheme not in ("xavier", "model"):
        raise ConfigError(f"init.scheme = '{cfg.init.scheme}' is for init.kind = 'random'; a fixed init takes 'xavier' or 'model'")
    if cfg.init.kind == "random" and cfg.init.scheme not in ("torch", "xavier", "kaiming", "normal"):
        raise ConfigError(f"init.scheme = '{cfg.init.scheme}' is for init.kind = 'fixed'; a random init takes 'torch', 'xavier', 'kaiming' or 'normal'")
    if cfg.oracle.q < 1 or not cfg.oracle.mu > 0:
        raise ConfigError("oracle.q must be >= 1 and oracle.mu > 0")
    if tr.truncation < 0:
        raise ConfigError("train.truncation must be >= 0")
    if t.family in ("incongruous", "uap"):
        known = ("mnist", "cifar10")
        for name in [*t.sources, *t.eval_sources]:
            if name not in known:
                raise ConfigError(f"task source {name!r} is not one of {list(known)}")
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
                              "incongruous sources need a shape-agnostic rule: 'lstm' or 'sgd'")
    if t.family in ("episodes", "incongruous", "uap"):
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
    """A config file path, or a shipped config name such as ``sinusoid/alfa-maml``."""
    p = Path(name)
    if p.is_file():
        return p
    shipped = CONFIG_DIR / (name if name.endswith(".toml") else f"{name}.toml")
    if shipped.is_file():
        return shipped
    raise ConfigError(f"no config file or shipped config named {name!r}; shipped: {', '.join(list_shipped())}")


def list_shipped() -> list[str]:
    return sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.toml"))


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


def load(name: str | None = None, overrides: list[str] | None = None, data: dict | None = None) -> Config:
    """Defaults <- config file ``name`` <- ``data`` <- ``--set`` overrides."""
    cfg = Config()
    if name is not None:
        path = resolve_path(name)
        apply(cfg, read_toml(path), where=str(path))
    if data:
        apply(cfg, data)
    nested: dict[str, dict[str, Any]] = {}
    for text in overrides or []:
        section, key, value = parse_override(text)
        nested.setdefault(section, {})[key] = value
    if nested:
        apply(cfg, nested, where="--set")
    validate(cfg)
    return cfg


def to_toml(cfg: Config) -> str:
    """Serialise a config (the subset of TOML our types need)."""

    def fmt(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, str):
            return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
        if isinstance(v, float):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(fmt(x) for x in v) + "]"
        return str(v)

    lines = []
    for section, values in cfg.to_dict().items():
        lines.append(f"[{section}]")
        for k, v in values.items():
            if v is not None:
                lines.append(f"{k} = {fmt(v)}")
        lines.append("")
    return "\n".join(lines)
