"""A base learner: an unmodified ``nn.Module``, its loss, and which parameters the inner loop adapts."""

from __future__ import annotations

import copy
import threading
from functools import partial
from typing import Callable

import torch
from torch import Tensor, nn
from torch.func import functional_call

from innerloop.errors import ConfigError
from innerloop.params import Params, split_inner_outer

def mse(out: Tensor, y: Tensor) -> Tensor:
    """Mean squared error from elementary ops.

    ``F.mse_loss`` has a wrong batching rule under *nested* vmap (tasks outside, zeroth-order
    directions inside) in PyTorch 2.13: it fails with a shape error; this form is exact.
    """
    return (out - y).pow(2).mean()


def cross_entropy(out: Tensor, y: Tensor) -> Tensor:
    """Mean cross-entropy from ``log_softmax`` and ``gather`` (safe under nested vmap, like :func:`mse`)."""
    return -out.log_softmax(-1).gather(-1, y.unsqueeze(-1)).mean()


def cw_margin(out: Tensor, y: Tensor, kappa: float = 0.0) -> Tensor:
    """Carlini-Wagner margin on log-probabilities (LFT eq. 12, ZO-L2L's form), averaged over the batch:

        f(x'; y) = max( log p(x')_y - max_{j != y} log p(x')_j , -kappa )

    zero (with kappa = 0) exactly when some wrong class is top-1, i.e. the attack succeeded.
    """
    logp = out.log_softmax(-1)
    true = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    others = logp.masked_fill(torch.nn.functional.one_hot(y, logp.shape[-1]).bool(), float("-inf")).amax(-1)
    return (true - others).clamp(min=-kappa).mean()


def mask_absent_classes(out: Tensor, y: Tensor) -> Tensor:
    """Logits of classes above the largest label of ``y`` set to -inf (a variable-way episode of w < C classes:
    labels ``0..w-1``, outputs ``[..., C]``), which is Meta-Dataset's slicing of the logits to the episode's ways.
    Exact under vmap (no data-dependent shapes); softmax, cross-entropy and argmax then see the w classes only."""
    absent = torch.arange(out.shape[-1], device=out.device) > y.max()
    return out.masked_fill(absent, float("-inf"))


LOSSES = {"mse": mse, "cross_entropy": cross_entropy, "cw": cw_margin}
METRICS = ("accuracy", "mse", "loss", "asr")


class Learner:
    """Runs ``model`` functionally on a parameter dict.

    Batch-norm policy: transductive. Normalisation layers use the statistics of the batch they
    see (support batch in the inner loop, query batch for the meta-loss) and keep no running
    statistics; their affine parameters are meta-learned but not adapted (``adapt_norm=False``).
    """

    def __init__(self, model: nn.Module, loss: str | Callable[[Tensor, Tensor], Tensor] = "mse",
                 adapt_norm: bool = False, penalty: Callable[[Params], Tensor] | None = None,
                 extra_metrics: dict[str, Callable[[Params], Tensor]] | None = None, kappa: float = 0.0,
                 metric: str | Callable[[Tensor, Tensor], Tensor] | None = None,
                 query_metrics: dict[str, str | Callable[[Tensor, Tensor], Tensor]] | None = None,
                 variable_ways: bool = False):
        """``loss``: ``"mse"``, ``"cross_entropy"``, ``"cw"``, or any ``loss(outputs, targets) -> scalar`` (it must
        run under ``torch.func.vmap`` for the vmap executor: elementary ops, no ``.item()``); ``adapt_norm``: the
        inner loop also adapts normalisation layers' affine parameters (default off, as in MAML / ALFA /
        MAML++: they are meta-learned only); ``penalty(params)`` is added to the loss (e.g. a UAP's
        lambda * ||delta||^2); ``extra_metrics`` are functions of the adapted parameters reported at evaluation
        (e.g. the perturbation's norm); ``kappa`` is the C&W loss's confidence margin; ``metric``: what
        evaluation reports, ``"accuracy"``, ``"mse"``, ``"loss"`` (the loss on the query set) or a function
        ``metric(outputs, targets) -> scalar`` (default: the named loss's own metric, else ``"loss"``);
        ``query_metrics``: more metrics of the query set, by name (``"accuracy"``, ``"mse"``, ``"loss"`` or a
        function of outputs and targets), reported beside ``metric`` after each recorded step count, from the same
        unroll (``info["metric/NAME"]``); ``variable_ways``: classification tasks may have fewer classes than the
        model's outputs (labels ``0..w-1``): the loss and the metrics see only the logits of classes up to the
        largest label scored (:func:`mask_absent_classes`)."""
        if isinstance(loss, str) and loss not in LOSSES:
            raise ConfigError(f"unknown loss {loss!r}; use one of {sorted(LOSSES)} or pass a function "
                              "loss(outputs, targets) -> scalar")
        if not isinstance(loss, str) and not callable(loss):
            raise ConfigError(f"loss must be a name ({', '.join(sorted(LOSSES))}) or a function loss(outputs, "
                              f"targets) -> scalar, got {type(loss).__name__}")
        for m in [metric, *(query_metrics or {}).values()]:
            if isinstance(m, str) and m not in METRICS:
                raise ConfigError(f"unknown metric {m!r}; use one of {list(METRICS)} or a function")
        for name, m in model.named_modules():
            if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
                raise ConfigError(
                    f"module {name!r} keeps running statistics, which the inner loop does not use (it normalises "
                    "with each batch's statistics): pass innerloop.models.convert_norm(model) (exact under vmap "
                    "too), or build the layer with track_running_stats=False"
                )
        self.model = model
        self._replica = threading.local()  # per-thread copies of the module (see :meth:`use_replica`)
        self.loss_name = loss if isinstance(loss, str) else "custom"
        self._loss = loss if not isinstance(loss, str) else partial(cw_margin, kappa=kappa) if loss == "cw" else \
            LOSSES[loss]
        if metric is None:
            metric = {"mse": "mse", "cross_entropy": "accuracy", "cw": "asr"}.get(self.loss_name, "loss")
        self._metric = metric
        self.inner, self.outer = split_inner_outer(model, adapt_norm)
        self.penalty = penalty
        self.extra_metrics = dict(extra_metrics or {})
        self.query_metrics = dict(query_metrics or {})
        self.variable_ways = bool(variable_ways)

    @property
    def has_builtin_norm(self) -> bool:
        """Built-in fused norms give wrong second-order meta-gradients under vmap (functorch#534)."""
        builtin = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)
        return any(isinstance(m, builtin) and any(True for _ in m.parameters()) for m in self.model.modules())

    @property
    def num_inner(self) -> int:
        """Number of adapted coordinates per task."""
        shapes = dict(self.model.named_parameters())
        return sum(shapes[n].numel() for n in self.inner)

    @property
    def has_conv(self) -> bool:
        return any(isinstance(m, nn.modules.conv._ConvNd) for m in self.model.modules())

    def use_replica(self) -> None:
        """Give the calling thread its own copy of the module for :meth:`forward`.

        ``functional_call`` runs the module by swapping the given tensors into it for the call, so two threads
        calling it on one module would run with each other's weights; task threads
        (:func:`~innerloop.engine.executor.loop_parallel`) call this first. The copy's own tensors are never
        used: every parameter is passed in."""
        self._replica.model = copy.deepcopy(self.model)

    def forward(self, params: Params, x: Tensor) -> Tensor:
        return functional_call(getattr(self._replica, "model", None) or self.model, params, (x,))

    def loss(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        return self.loss_of(self.forward(params, x), y, params)

    def loss_of(self, out: Tensor, y: Tensor, params: Params) -> Tensor:
        """The loss of outputs ``out`` (the model at ``params``) against ``y``, with the penalty of ``params``."""
        loss = self._loss(mask_absent_classes(out, y) if self.variable_ways else out, y)
        return loss if self.penalty is None else loss + self.penalty(params)

    @property
    def metric_name(self) -> str:
        return self._metric if isinstance(self._metric, str) else getattr(self._metric, "__name__", "metric")

    @property
    def higher_is_better(self) -> bool:
        return self._metric in ("accuracy", "asr")

    def metric(self, params: Params, x: Tensor, y: Tensor) -> Tensor:
        """MSE for regression, accuracy in [0, 1] for classification, attack success rate (the
        fraction of inputs the victim misclassifies) in [0, 1] for adversarial perturbations, the query loss,
        or the user's ``metric(outputs, targets)``."""
        return self.score(self.forward(params, x), y)

    def score(self, out: Tensor, y: Tensor, metric: str | Callable[[Tensor, Tensor], Tensor] | None = None) -> Tensor:
        """The metric (or the given ``metric``) of outputs ``out`` against targets ``y``."""
        m = self._metric if metric is None else metric
        if self.variable_ways:
            out = mask_absent_classes(out, y)
        if callable(m):
            return m(out, y)
        if m == "mse":
            return mse(out, y)
        if m == "loss":
            return self._loss(out, y)
        correct = (out.argmax(-1) == y).to(out.dtype).mean()
        return 1 - correct if m == "asr" else correct
