"""A meta-learner = init + rule + oracle + objective over one or more base learners, and its meta-step."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor, nn

from innerloop.engine.adapt import Adapted
from innerloop.engine.checkpointed import UnrollPlan, checkpointed_unroll
from innerloop.engine.learner import mask_absent_classes
from innerloop.engine.executor import choose_mode, index_tree, is_ragged, map_ragged, map_tasks, stack_trees
from innerloop.engine.learner import Learner
from innerloop.engine.unroll import InnerLoop, stack_infos
from innerloop.errors import ConfigError
from innerloop.objectives.query import FinalQueryLoss, QueryObjective
from innerloop.oracles import draws_in_order
from innerloop.oracles.autograd import AutogradOracle
from innerloop.oracles.keyed import ATTENUATION, TaskKey, draw_salt, task_indices
from innerloop.params import Params
from innerloop.rules.base import UpdateRule
from innerloop.tasks.task import check_batch

DEFAULT = "default"


class MetaLearner(nn.Module):
    """Owns the meta-parameters (``init`` and ``rule`` modules) and computes meta-gradients.

    ``learner`` / ``init`` may be dicts keyed by task family for *incongruous* meta-batches (base
    learners of different architectures, e.g. an MLP family and a CNN family); a batch is then a
    dict ``family -> tasks``. Each family runs on its own executor (vmap or loop, chosen per
    workload); all families share the rule. A meta-learned (or fixed) initialisation belongs to one
    architecture, so incongruous families need a per-task init (:class:`~innerloop.inits.RandomInit`).

    ``meta_backward(batch)`` accumulates ``d mean_i L_meta(task_i) / d meta`` into ``.grad``.
    ``checkpoint`` > 0 stores the inner state every ``checkpoint`` steps and recomputes the rest in
    the backward pass (final-step objective only). ``truncation`` > 0 splits long unrolls into
    segments for truncated backpropagation (see :meth:`spans` and :meth:`meta_backward_span`).
    ``compile`` runs the vmapped meta-loss through ``torch.compile`` (vmap executor only; measured ~2-3x on the
    sinusoid MLP after a one-off compilation of ~40 s; a new trajectory weighting recompiles). ``workers`` > 1
    runs the loop executor's tasks in that many threads (0: one per CPU core; see
    :func:`~innerloop.engine.executor.loop_parallel`).
    """

    def __init__(
        self,
        learner: Learner | Mapping[str, Learner],
        init: nn.Module | Mapping[str, nn.Module],
        rule: UpdateRule,
        oracle: Any = None,
        objective: QueryObjective | None = None,
        steps: int = 5,
        executor: str = "auto",
        checkpoint: int = 0,
        device: str | torch.device = "cpu",
        truncation: int = 0,
        attenuator: nn.Module | None = None,
        compile: bool = False,
        workers: int = 1,
        inner_loss: nn.Module | None = None,
        proto_head: nn.Module | None = None,
    ):
        super().__init__()
        if steps < 1:
            raise ConfigError("inner.steps must be >= 1 (a meta-objective needs at least one inner step)")
        learners = dict(learner) if isinstance(learner, Mapping) else {DEFAULT: learner}
        inits = dict(init) if isinstance(init, Mapping) else {DEFAULT: init}
        if set(learners) != set(inits):
            raise ConfigError(f"every task family needs a learner and an init: got {sorted(learners)} vs {sorted(inits)}")
        if len(learners) > 1:
            shared = [f for f, i in inits.items() if not getattr(i, "per_task", False)]
            if shared:
                raise ConfigError(
                    "a meta-learned or fixed initialisation cannot be shared by incongruous tasks (different "
                    "architectures), so MAML does not apply: use a per-task random init (init.kind = 'random') "
                    "with a coordinate-wise rule such as the LSTM fine-tuner"
                )
        self.learners = learners
        self.learner = next(iter(learners.values()))
        self.inits = nn.ModuleDict(inits)
        self.rule = rule
        self.oracle = oracle or AutogradOracle("second")
        self.objective = objective or FinalQueryLoss()
        self.steps = steps
        coordinatewise = getattr(rule, "coordinatewise", False)
        self.modes = {f: choose_mode(l, device, executor, coordinatewise) for f, l in learners.items()}
        self.mode = self.modes[next(iter(learners))]
        if checkpoint < 0:
            raise ConfigError("train.checkpoint_unroll must be >= 0 (0 = off, c = keep every c-th inner state)")
        if checkpoint and not self.objective.final_only:
            raise ConfigError("a checkpointed unroll supports only the final-step objective: set objective.kind = 'final'")
        if truncation < 0:
            raise ConfigError("train.truncation must be >= 0 (0 = backpropagate through the whole unroll)")
        if checkpoint and truncation and truncation < steps:
            raise ConfigError("use either train.checkpoint_unroll or train.truncation, not both")
        self.checkpoint = checkpoint
        self.truncation = truncation
        if compile and (checkpoint or any(m != "vmap" for m in self.modes.values())):
            raise ConfigError(
                "train.compile compiles the batched (vmap) meta-loss only: set train.executor = 'vmap' (or 'auto' where it "
                "picks vmap: MLPs on CPU, everything on a GPU) and train.checkpoint_unroll = 0, or train.compile = false"
            )
        self.compiled = compile
        if workers < 0:
            raise ConfigError(f"train.workers = {workers} must be >= 0 (0 = one per CPU core, 1 = no task threads)")
        # 0: one per CPU core, shared out among the processes of a job on this machine (torchrun's LOCAL_WORLD_SIZE)
        self.workers = workers or max(1, (os.cpu_count() or 1) // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
        if self.workers > 1 and draws_in_order(self.oracle):
            raise ConfigError("train.workers > 1 needs an oracle whose random numbers do not depend on the order of the "
                              "tasks: set oracle.noise = 'keyed' (or train.workers = 1)")
        if attenuator is not None and len(learners) > 1:
            raise ConfigError("L2F attenuation (init.attenuate) needs one architecture: it has one output per layer")
        if attenuator is not None and checkpoint:
            raise ConfigError("L2F attenuation (init.attenuate) is not supported with train.checkpoint_unroll: set it to 0")
        self.attenuator = attenuator
        if inner_loss is not None and len(learners) > 1:
            raise ConfigError("a learned inner loss (objective.inner_loss = 'metal') is built for one architecture "
                              "(it reads each layer's mean): use one task family, or objective.inner_loss = 'task'")
        if inner_loss is not None and checkpoint:
            raise ConfigError("a learned inner loss (objective.inner_loss = 'metal') is not supported with "
                              "train.checkpoint_unroll: set it to 0")
        self.inner_loss = inner_loss  # meta-parameters like the rule's (None: the task loss alone)
        if proto_head is not None and len(learners) > 1:
            raise ConfigError("init.proto (Proto-MAML) builds the head of one architecture: use one task family")
        if proto_head is not None and checkpoint:
            raise ConfigError("init.proto (Proto-MAML) is not supported with train.checkpoint_unroll: set it to 0")
        self.proto_head = proto_head  # Proto-MAML: each task's output layer starts at its support prototypes
        log_meta = bool(getattr(objective, "log", False))
        self.loops = {f: InnerLoop(l, rule, self.oracle, inner_loss, log_meta) for f, l in learners.items()}
        self.loop = self.loops[next(iter(learners))]

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """``nn.Module.load_state_dict``, also for checkpoints written before task families existed (their init's
        keys start ``init.``; now ``inits.<family>.``)."""
        family = next(iter(self.learners))
        if any(k.startswith("init.") for k in state_dict) and not any(k.startswith("inits.") for k in state_dict):
            state_dict = {(f"inits.{family}." + k[len("init."):] if k.startswith("init.") else k): v
                          for k, v in state_dict.items()}
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    @property
    def init(self) -> nn.Module:
        return next(iter(self.inits.values()))

    # ------------------------------------------------------------------ helpers
    def groups(self, batch) -> dict[str, Any]:
        """Split a batch into ``family -> tasks`` (a plain batch belongs to the only family). A batch is a
        :class:`~innerloop.tasks.TaskBatch` (or the tuple ``(xs, ys, xq, yq)``), a list of per-task tuples, or a
        dict ``family -> batch`` for incongruous task families; anything else is a one-line ConfigError."""
        if isinstance(batch, Mapping):
            unknown = set(batch) - set(self.learners)
            if unknown:
                raise ConfigError(f"unknown task families {sorted(unknown)}; this meta-learner has "
                                  f"{sorted(self.learners)} (a dict batch maps task family -> tasks; one family's "
                                  "tasks are a TaskBatch)")
            for family, tasks in batch.items():
                check_batch(tasks, f"the batch of family {family!r}")
            return dict(batch)
        if len(self.learners) > 1:
            raise ConfigError("this meta-learner has several task families: pass the batch as a dict family -> tasks")
        check_batch(batch)
        return {DEFAULT if DEFAULT in self.learners else next(iter(self.learners)): tuple(batch)
                if isinstance(batch, tuple) else batch}

    @staticmethod
    def _count(tasks) -> int:
        return len(tasks) if is_ragged(tasks) else tasks[0].shape[0]

    def _task_init(self, loop: InnerLoop, params: Params, static: Params, x: Tensor, y: Tensor,
                   key: TaskKey | None = None) -> Params:
        """The task's theta_0 from the shared one and its support set: Proto-MAML's head from the support
        prototypes (:mod:`innerloop.inits.proto`), then L2F's layer-wise attenuation by gamma(mean support gradient
        at theta_0) (spec section 5); unchanged without either."""
        if self.proto_head is not None:
            params = self.proto_head(loop.learner, params, static, x, y)
        if self.attenuator is None:
            return params
        _, grads, _ = self.oracle(loop.support_loss_fn(static, x, y), params,
                                  None if key is None else key.at(ATTENUATION))
        return self.attenuator(params, grads)[0]

    def _salt(self) -> int | None:
        """A batch's salt for keyed random oracles (drawn from the global generator); None when nothing is keyed."""
        return draw_salt() if getattr(self.oracle, "keyed", False) else None

    @staticmethod
    def _indices(salt: int | None, first: int, n: int) -> Tensor | None:
        return None if salt is None else task_indices(first, n)

    def _start(self, family: str, n: int, keep: slice | None = None) -> tuple[Params | None, Params, Params | None]:
        """(shared theta_0 | None, shared static, per-task full params [n, ...] | None); ``keep``: the tasks of a
        shard (per-task draws are made for all ``n`` and sliced)."""
        init, learner = self.inits[family], self.learners[family]
        if getattr(init, "per_task", False):
            drawn = init.sample(n)
            return None, {}, drawn if keep is None else index_tree(drawn, keep)
        full = init()
        return {k: full[k] for k in learner.inner}, {k: full[k] for k in learner.outer}, None

    def start(self) -> tuple[Params, Params]:
        """(theta_0 of the adapted tensors, outer-only tensors) of a shared (learned or fixed) init."""
        shared, static, per_task = self._start(next(iter(self.learners)), 1)
        if shared is None:
            raise ConfigError("this meta-learner draws a fresh initialisation per task: there is no shared theta_0")
        return shared, static

    def task_starts(self, family: str, n: int) -> tuple[Params, Params]:
        """Starting points of ``n`` tasks of ``family``: (theta_0^i of the adapted tensors, the other tensors),
        each ``[n, ...]``. A shared init is expanded; a per-task init (random init) draws ``n`` fresh ones."""
        shared, static, per_task = self._start(family, n)
        if per_task is None:
            per_task = {k: v.expand(n, *v.shape) for k, v in {**shared, **static}.items()}
        names = self.learners[family].inner
        return ({k: v for k, v in per_task.items() if k in names},
                {k: v for k, v in per_task.items() if k not in names})

    def spans(self, steps: int | None = None) -> list[tuple[int, int]]:
        """Step ranges of an unroll of ``steps`` (default ``self.steps``) backpropagated separately (one optimiser
        update each under truncation)."""
        steps = self.steps if steps is None else steps
        t = self.truncation or steps
        return [(a, min(a + t, steps)) for a in range(0, steps, t)]

    def _trainable(self) -> list[Tensor]:
        return [p for p in self.parameters() if p.requires_grad]

    # ------------------------------------------------------------------ meta-training
    def meta_backward(self, batch, epoch: int = 0) -> tuple[Tensor, dict[str, Tensor]]:
        """Backpropagate the mean meta-loss over all inner steps; returns per-task losses and diagnostics.

        ``batch`` is ``(xs, ys, xq, yq)`` with a leading task dimension, a list of per-task tuples
        for tasks that cannot be stacked (run by the loop), or a dict ``family -> either``.
        """
        losses, aux, _ = self.meta_backward_span(batch, epoch, 0, self.steps, None)
        return losses, aux

    def meta_backward_span(self, batch, epoch: int, start: int, stop: int, carry: dict | None,
                           shard: tuple[int, int] | None = None, steps: int | None = None):
        """Backpropagate the meta-loss of steps ``start .. stop-1`` from ``carry`` (the detached
        inner state per family at ``start``; None at step 0). Returns losses, aux, next carry.

        ``shard = (lo, hi)``: only tasks ``lo .. hi-1`` of the batch (in family order, the order of the returned
        losses) are run, and their gradients are still scaled by 1 / (all tasks of the batch): the sum of the
        shards' ``.grad`` over any partition of the batch is the whole batch's mean meta-gradient
        (:mod:`innerloop.distributed`). Per-task initialisations are drawn for the whole batch and sliced, so
        every shard sees exactly the random numbers the single process gives its tasks. Losses, aux and carry
        cover the shard's tasks only. A keyed random oracle's numbers follow each task's index in the whole batch
        (:mod:`innerloop.oracles.keyed`), with one salt per batch drawn at step 0 and carried across spans.
        ``steps``: the whole unroll's length this meta-iteration (default ``self.steps``; ``train.horizon`` draws
        it), which sets the objective's step weights."""
        groups = self.groups(batch)
        total = sum(self._count(t) for t in groups.values())
        steps = self.steps if steps is None else steps
        weights = self.objective.step_weights(steps, epoch)[start:stop]
        all_losses, all_aux, new_carry = [], [], {}
        salt = self._salt() if start == 0 else (carry or {}).get("salt")
        new_carry["salt"] = salt
        off = 0
        for family, tasks in groups.items():
            n = self._count(tasks)
            lo, hi = 0, n
            keep = None
            if shard is not None:
                lo, hi = min(max(shard[0] - off, 0), n), min(max(shard[1] - off, 0), n)
                keep = slice(lo, hi)
                tasks = tasks[lo:hi] if is_ragged(tasks) else index_tree(tasks, keep)
            index = self._indices(salt, off + lo, hi - lo)
            off += n
            if keep is not None and keep.stop == keep.start:
                if start == 0:
                    self._start(family, n)  # the draws the single process makes for these tasks
                continue
            if self.checkpoint and (start, stop) == (0, self.steps) and steps == self.steps:
                losses, aux, fin = self._checkpointed(family, tasks, n, total, keep, salt, index)
            else:
                losses, aux, fin = self._plain(family, tasks, n, total, weights, start, carry and carry.get(family),
                                               keep, salt, index)
            all_losses.append(losses)
            all_aux.append(aux)
            new_carry[family] = fin
        if not all_losses:  # a shard with no tasks
            return torch.zeros(0), {}, new_carry
        aux = {k: torch.cat([a[k].flatten(1) for a in all_aux]) for k in all_aux[0]} if len(all_aux) > 1 else all_aux[0]
        return torch.cat(all_losses), aux, new_carry

    def _plain(self, family, tasks, n, total, weights, start, carry, keep=None, salt=None, index=None):
        loop = self.loops[family]
        if carry is None:
            shared, static, per_task = self._start(family, n, keep)
        elif getattr(self.inits[family], "per_task", False):
            shared, static, per_task = None, {}, None  # the per-task static params travel in the carry
        else:
            shared, static, per_task = None, self._start(family, n)[1], None
        n = n if keep is None else keep.stop - keep.start
        objective = self.objective
        inner_names = self.learners[family].inner

        def task(params, state, stat, idx, xs, ys, xq, yq):
            if params is None:
                params = dict(shared)
            key = None if idx is None else TaskKey(idx, salt)
            x_in, y_in, x_m, y_m = objective.split(xs, ys, xq, yq)
            if start == 0:
                params = self._task_init(loop, params, {**static, **(stat or {})}, x_in, y_in, key)
            return loop.meta_loss(params, state, {**static, **(stat or {})}, x_in, y_in, x_m, y_m, weights, start,
                                  key)

        if carry is not None:
            params, state, stat = carry["params"], carry["state"], carry["static"]
        elif per_task is not None:
            params = {k: v for k, v in per_task.items() if k in inner_names}
            stat = {k: v for k, v in per_task.items() if k not in inner_names}
            state = None
        else:
            params, state, stat = None, None, None
        if is_ragged(tasks):
            items = [(*index_tree([params, state, stat, index], i), *t) for i, t in enumerate(tasks)]
            losses, aux, p, s = map_ragged(task, items, backward=True, scale=1.0 / total)
        else:
            losses, aux, p, s = map_tasks(task, [params, state, stat, index, *tasks], self.modes[family], n,
                                          backward=True, scale=1.0 / total, compile=self.compiled,
                                          workers=self.workers, wrt=self._trainable(),
                                          replicate=self.learners[family].use_replica)
        fin = {"params": p, "state": s, "static": stat if stat is not None else {}}
        return losses, aux, fin

    def _checkpointed(self, family, tasks, n, total, keep=None, salt=None, index=None):
        if is_ragged(tasks):
            raise ConfigError("the checkpointed unroll needs stacked tasks; set train.checkpoint_unroll = 0 for ragged batches")
        learner, loop = self.learners[family], self.loops[family]
        shared, static, per_task = self._start(family, n, keep)
        n = n if keep is None else keep.stop - keep.start
        names = list(learner.inner)
        xs, ys, xq, yq = tasks
        if per_task is not None:
            start = {k: per_task[k] for k in names}
            static_b = {k: v for k, v in per_task.items() if k not in names}
        else:
            start = None
            static_b = None
        meta = list(self.rule.parameters()) + [v for v in static.values()]

        def query_loss(params, st, x, y):
            return learner.loss({**static, **st, **params}, x, y)

        if self.modes[family] == "vmap" and static_b is None:
            plan = UnrollPlan(loop, names, static, meta, xs, ys, self.steps, self.checkpoint, True, salt=salt,
                              index=index)
            theta = start if start is not None else {k: v.expand(n, *v.shape) for k, v in shared.items()}
            final = checkpointed_unroll(plan, theta)
            losses = torch.vmap(lambda p, x, y: query_loss(p, {}, x, y))(final, xq, yq)
            (losses.sum() / total).backward()
            return losses.detach(), plan.infos, None
        losses, infos = [], []
        for i in range(n):
            st = {} if static_b is None else {k: v[i] for k, v in static_b.items()}
            plan = UnrollPlan(loop, names, {**static, **st}, meta, xs[i], ys[i], self.steps, self.checkpoint, False,
                              salt=salt, index=None if index is None else index[i])
            theta = shared if start is None else {k: v[i] for k, v in start.items()}
            final = checkpointed_unroll(plan, theta)
            loss = query_loss(final, st, xq[i], yq[i])
            (loss / total).backward()
            losses.append(loss.detach())
            infos.append(plan.infos)
        return torch.stack(losses), stack_trees(infos) if infos and infos[0] else {}, None

    # ------------------------------------------------------------------ one task, for users
    def _family(self, family: str | None) -> str:
        if family is None:
            if len(self.learners) > 1:
                raise ConfigError(f"this meta-learner has several task families {sorted(self.learners)}: pass "
                                  "family=NAME")
            return next(iter(self.learners))
        if family not in self.learners:
            raise ConfigError(f"unknown task family {family!r}; this meta-learner has {sorted(self.learners)}")
        return family

    def adapt(self, support_x: Tensor, support_y: Tensor, steps: int | None = None, seed: int = 0,
              family: str | None = None, query_x: Tensor | None = None) -> Adapted:
        """Adapt to one task from its support set: the initialisation (learned, fixed or a fresh random draw from
        ``seed``), L2F's attenuation if any, then ``steps`` (default: the meta-training ``inner.steps``) steps of
        the rule with the oracle's gradients. Returns an :class:`~innerloop.engine.adapt.Adapted` with
        ``.predict(x)``, ``.module()`` and ``.state_dict()``; the meta-learner is not changed.

        ``support_x`` / ``support_y`` are one task's examples (no task dimension); classification labels are
        0 .. ways-1. They are moved to the meta-learner's device and floating dtype. A loaded run
        (:func:`innerloop.load`) takes its test-time steps (``eval.steps``) by default. ``query_x``: the unlabelled
        inputs to be predicted, read by a transductive learned inner loss (MeTAL; as evaluation does), else unused."""
        family = self._family(family)
        learner, loop = self.learners[family], self.loops[family]
        steps = getattr(self, "test_steps", self.steps) if steps is None else int(steps)
        if steps < 0:
            raise ConfigError(f"steps = {steps} must be >= 0")
        ref = next(iter(learner.model.parameters()))
        x = support_x.to(ref.device, ref.dtype if support_x.is_floating_point() else support_x.dtype)
        y = support_y.to(ref.device, ref.dtype if support_y.is_floating_point() else support_y.dtype)
        xq = None if query_x is None else query_x.to(ref.device, ref.dtype if query_x.is_floating_point() else
                                                     query_x.dtype)
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            salt = self._salt()
            shared, static, per_task = self._start(family, 1)
            key = None if salt is None else TaskKey(task_indices(0, 1)[0], salt)
            if per_task is not None:
                params = {k: v[0] for k, v in per_task.items() if k in learner.inner}
                stat = {k: v[0] for k, v in per_task.items() if k not in learner.inner}
            else:
                params = {k: v.detach() for k, v in shared.items()}
                stat = {k: v.detach() for k, v in static.items()}
            params = self._task_init(loop, params, stat, x, y, key)
            state = self.rule.init_state(params)
            params, state, _, losses = loop.run(params, state, stat, x, y, 0, steps, key, x_query=xq)
        merged = {**stat, **params}
        ordered = {n: merged[n].detach() for n, _ in learner.model.named_parameters()}
        return Adapted(learner, ordered, steps, [float(v) for v in losses])

    def initial_state_dict(self, family: str | None = None) -> dict[str, Tensor]:
        """The meta-learned (or fixed) initialisation as a ``state_dict`` of the model, in
        ``model.named_parameters()`` order (buffers as the model holds them); ConfigError for a per-task random
        init, which has none."""
        family = self._family(family)
        shared, static, per_task = self._start(family, 1)
        if shared is None:
            raise ConfigError("this meta-learner draws a fresh random initialisation per task (LFT / L2O, "
                              "ALFA+Random): there is no learned initialisation to export; its rule is the "
                              "meta-learned part")
        model = self.learners[family].model
        merged = {**static, **shared}
        out = {n: merged[n].detach().clone() for n, _ in model.named_parameters()}
        out.update({n: b.detach().clone() for n, b in model.named_buffers()})
        return {k: out[k] for k in model.state_dict()}

    def export(self, path: str | Path, family: str | None = None) -> dict[str, str]:
        """Write the learned initialisation as a plain ``state_dict`` of the model and the rule's
        meta-parameters into folder ``path`` (see :func:`innerloop.export.export`); returns the files."""
        from innerloop.export import export

        return export(self, path, family)

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def evaluate(self, batch, steps: int | None = None, chunk: int = 100, record: Sequence[int] | None = None,
                 seed: int = 0, shard: tuple[int, int] | None = None, outputs: bool = False) -> tuple[Tensor, dict]:
        """Adapt each task on its support set and return the query metric per task.

        With ``record``, returns ``[tasks, len(record)]``: the metric after each listed number of
        steps (0 = before adapting), from one unroll of ``max(record)`` steps. The inner loop needs
        gradients, which ``torch.func.grad`` computes even under ``no_grad``; no meta-graph is built.
        Random draws (per-task inits, zeroth-order directions) come from ``seed``, so evaluation is
        repeatable and paired across methods. ``shard = (lo, hi)``: only tasks ``lo .. hi-1`` (in family order)
        are adapted, with exactly the random numbers the whole batch gives them (per-task inits are drawn for
        every task and sliced; keyed directions follow the task's index); their chunks start at ``lo``.
        ``outputs=True`` adds the model's query outputs after the last step to ``info``: ``"outputs"``
        ``[tasks, query, ...]`` (logits for a classifier), ``"labels"`` (the query targets) and, for
        classifiers, ``"predictions"`` (argmax).
        """
        steps = self.steps if steps is None else steps
        if steps < 0:
            raise ConfigError("evaluation steps must be >= 0")
        marks = sorted(set(record)) if record is not None else [steps]
        if marks[0] < 0:
            raise ConfigError("recorded steps must be >= 0")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            salt = self._salt()
            results, infos = [], []
            off = 0
            for family, tasks in self.groups(batch).items():
                n = self._count(tasks)
                lo, hi = (0, n) if shard is None else (min(max(shard[0] - off, 0), n), min(max(shard[1] - off, 0), n))
                index = self._indices(salt, off + lo, hi - lo)
                off += n
                v, i = self._evaluate_family(family, tasks, marks, chunk, slice(lo, hi), salt, index, outputs)
                if hi > lo:
                    results.append(v)
                    infos.append(i)
        if not results:  # a shard with no tasks
            return torch.zeros(0, len(marks)) if record is not None else torch.zeros(0), {}
        values = torch.cat(results)
        if len(infos) == 1:
            info = infos[0]
        else:  # several families: only the per-task evaluation metrics line up (outputs: a list per family)
            info = {k: torch.cat([i[k] for i in infos]) for k in infos[0]
                    if k.startswith("metric/") and all(k in i for i in infos)}
            if outputs:
                info.update({k: [i[k] for i in infos] for k in ("outputs", "labels", "predictions") if k in infos[0]})
        return (values if record is not None else values[:, 0]), info

    def _evaluate_family(self, family, tasks, marks, chunk, keep: slice, salt: int | None, index: Tensor | None,
                         outputs: bool = False):
        learner, loop = self.learners[family], self.loops[family]
        n = self._count(tasks)
        shared, static, per_task = self._start(family, n, keep)  # the draws of all n tasks, sliced
        if keep.stop == keep.start:
            return None, {}
        if (keep.start, keep.stop) != (0, n):
            tasks = tasks[keep] if is_ragged(tasks) else index_tree(tasks, keep)
        n = keep.stop - keep.start
        shared = None if shared is None else {k: v.detach() for k, v in shared.items()}
        static = {k: v.detach() for k, v in static.items()}
        names = learner.inner

        def task(full, idx, xs, ys, xq, yq):
            if full is None:
                params, stat = dict(shared), static
            else:
                params = {k: v for k, v in full.items() if k in names}
                stat = {**static, **{k: v for k, v in full.items() if k not in names}}
            key = None if idx is None else TaskKey(idx, salt)
            # test-time fine-tuning sees only the support set, whatever the meta-objective merged in training
            x_in, y_in = xs, ys
            params = self._task_init(loop, params, stat, x_in, y_in, key)
            state = self.rule.init_state(params)
            out, done, infos = [], 0, []
            extra: dict[str, list[Tensor]] = {k: [] for k in [*learner.extra_metrics, *learner.query_metrics]}
            for m in marks:
                params, state, inf, _ = loop.run(params, state, stat, x_in, y_in, done, m, key, x_query=xq)
                infos += inf
                done = m
                query_out = learner.forward({**stat, **params}, xq)
                out.append(learner.score(query_out, yq))
                for k, fn in learner.extra_metrics.items():
                    extra[k].append(fn(params))
                for k, qm in learner.query_metrics.items():
                    extra[k].append(learner.score(query_out, yq, qm))
            info = stack_infos(infos)
            info.update({f"metric/{k}": torch.stack(v) for k, v in extra.items()})  # [marks] per task
            if outputs:
                info["outputs"] = learner.forward({**stat, **params}, xq)
                info["labels"] = yq
                if learner.loss_name in ("cross_entropy", "cw"):
                    logits = mask_absent_classes(info["outputs"], yq) if learner.variable_ways else info["outputs"]
                    info["predictions"] = logits.argmax(-1)  # a variable-way task predicts among its own classes
            return torch.stack(out), info

        if is_ragged(tasks):
            return map_ragged(task, [(*index_tree([per_task, index], i), *t) for i, t in enumerate(tasks)])
        return map_tasks(task, [per_task, index, *tasks], self.modes[family], n, chunk=chunk, workers=self.workers,
                         replicate=learner.use_replica)
