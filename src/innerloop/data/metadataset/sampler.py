"""Meta-Dataset's episode sampler: which classes, how many support and query examples, and which records.

Variable ways and shots (Meta-Dataset ``data/sampling.py``, defaults of ``data_config_common.gin``):

* **Classes.** Bi-level sources (Omniglot): one superclass (alphabet) uniformly among those with at least
  ``min_ways`` classes, ``ways ~ U{min_ways, ..., min(max_ways_upper_bound, #its classes)}``, classes drawn
  uniformly without replacement from it. Hierarchical sources (ILSVRC): one *eligible* internal DAG node
  uniformly (spanning ``min_ways..392`` leaves), its leaves in WordNet-id order, subsampled without
  replacement to ``max_ways_upper_bound`` if more. Flat sources: ``ways ~ U{min_ways, ...,
  min(max_ways_upper_bound, #classes)}``, classes uniformly without replacement.
* **Query** per class (balanced): ``q = min(max_num_query, floor(min_c images_c / 2))``.
* **Support size**: ``remaining_c = images_c - q``, ``beta ~ U(0, 1]``,
  ``size = min(max_support_set_size, sum_c ceil(beta * min(max_support_size_contrib_per_class, remaining_c)))``
  (computed as ``floor(u * m) + 1`` with ``u ~ U[0, 1)``, the same distribution), so ``size >= ways``.
* **Shots**: ``w_c = images_c * exp(U(min_log_weight, max_log_weight))``, ``p_c = w_c / sum w``,
  ``shots_c = min(floor(p_c * (size - ways)) + 1, remaining_c)``: every class has at least one shot.

Fixed settings (``ways``, ``shots``, ``query``) override the draws, as Meta-Dataset's
``fixed_way_and_shot.gin``: a fixed ``ways`` ignores the hierarchy (classes uniformly from the split);
with a fixed ``shots`` and no ``query``, ``q = min(max_num_query, min_c images_c - shots)``.

Classes that cannot take part are never drawn: fewer than 2 images (variable shots), or fewer than
``shots + query`` (fixed; ``query`` counts as 1 when it is drawn). A split that cannot supply an episode
(too few usable classes, no eligible superclass or DAG node, more ways than classes) is a one-line
:class:`~innerloop.errors.ConfigError` when the sampler is built.

Records: for each class, ``shots_c + q`` distinct record indices are drawn uniformly without replacement
(the first ``shots_c`` for the support set), so a reader fetches them by random access: no
shuffle buffer, no dependence on the order records were written in.

Each sampler owns its ``numpy.random.Generator`` (``seed``: an int, a Generator, or None for fresh entropy).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from innerloop.data.metadataset.spec import MAX_SPANNING_LEAVES_ELIGIBLE, DatasetSpec, split_name
from innerloop.errors import ConfigError

__all__ = ["EpisodeConfig", "EpisodeDescription", "EpisodeSampler", "sample_num_ways", "num_query",
           "sample_support_size", "sample_shots"]


def sample_num_ways(rng: np.random.Generator, available: int, min_ways: int, max_ways_upper_bound: int) -> int:
    """``ways ~ U{min_ways, ..., min(max_ways_upper_bound, available)}``."""
    return int(rng.integers(min_ways, min(max_ways_upper_bound, available) + 1))


def num_query(images: np.ndarray, max_num_query: int, shots: int | None = None) -> int:
    """Query examples per class: ``min(max_num_query, floor(min images / 2))``, or with a fixed ``shots``
    ``min(max_num_query, min images - shots)``."""
    smallest = int(np.min(images))
    return int(min(max_num_query, smallest // 2 if shots is None else smallest - shots))


def sample_support_size(rng: np.random.Generator, remaining: np.ndarray, max_contrib_per_class: int,
                        max_support_set_size: int) -> int:
    """``min(max_support_set_size, sum_c ceil(beta * min(max_contrib_per_class, remaining_c)))``, ``beta ~ U(0, 1]``.

    Drawn as ``floor(u * m_c) + 1`` with ``u ~ U[0, 1)`` (one ``rng.random()``), which has the same distribution.
    """
    contributions = np.minimum(max_contrib_per_class, np.asarray(remaining))
    u = rng.random()
    return int(min(max_support_set_size, np.floor(u * contributions + 1).sum()))


def sample_shots(rng: np.random.Generator, images: np.ndarray, remaining: np.ndarray, size: int,
                 min_log_weight: float, max_log_weight: float) -> np.ndarray:
    """``shots_c = min(floor(p_c * (size - ways)) + 1, remaining_c)`` with ``p_c`` proportional to
    ``images_c * exp(U(min_log_weight, max_log_weight))`` (one draw per class)."""
    images = np.asarray(images)
    ways = len(images)
    weights = images * np.exp(rng.uniform(min_log_weight, max_log_weight, size=ways))
    proportions = weights / weights.sum()
    shots = np.floor(proportions * (size - ways)).astype(np.int64) + 1
    return np.minimum(shots, np.asarray(remaining)).astype(np.int64)


@dataclass(frozen=True)
class EpisodeConfig:
    """How episodes are drawn; ``None`` for ``ways``/``shots``/``query`` means variable (Meta-Dataset's draw)."""

    ways: int | None = None
    shots: int | None = None
    query: int | None = None
    min_ways: int = 5
    max_ways_upper_bound: int = 50
    max_num_query: int = 10
    max_support_set_size: int = 500
    max_support_size_contrib_per_class: int = 100
    min_log_weight: float = math.log(0.5)
    max_log_weight: float = math.log(2.0)
    use_hierarchy: bool = True
    max_spanning_leaves: int = MAX_SPANNING_LEAVES_ELIGIBLE

    def check(self) -> None:
        """ConfigError for a value no episode can have."""
        for key in ("ways", "shots", "query"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (int, np.integer)) or isinstance(value, bool)
                                      or value < 1):
                raise ConfigError(f"episode {key} must be a positive integer or None (variable), got {value!r}")
        for key in ("min_ways", "max_ways_upper_bound", "max_num_query", "max_support_set_size",
                    "max_support_size_contrib_per_class", "max_spanning_leaves"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"episode {key} must be a positive integer, got {value!r}")
        if self.min_ways > self.max_ways_upper_bound:
            raise ConfigError(f"episode min_ways={self.min_ways} exceeds max_ways_upper_bound="
                              f"{self.max_ways_upper_bound}: lower min_ways or raise the bound")
        if not self.min_log_weight <= self.max_log_weight:
            raise ConfigError(f"episode min_log_weight={self.min_log_weight} exceeds max_log_weight="
                              f"{self.max_log_weight}")
        largest = self.ways if self.ways is not None else self.max_ways_upper_bound
        if self.shots is None and self.max_support_set_size < largest:
            raise ConfigError(f"episode max_support_set_size={self.max_support_set_size} is below the "
                              f"{largest} ways an episode may have (one support example per class): raise it")


@dataclass
class EpisodeDescription:
    """One episode's composition: class ``classes[k]`` gets episode label ``k``.

    ``support_indices[k]`` / ``query_indices[k]``: record indices (0-based, within that class's file) of its
    support and query examples, disjoint. ``group``: the superclass id (bi-level) or WordNet id (DAG) the
    classes were drawn from, else None.
    """

    split: str
    classes: np.ndarray
    support_indices: list[np.ndarray]
    query_indices: list[np.ndarray]
    group: int | str | None = None

    @property
    def ways(self) -> int:
        return len(self.classes)

    @property
    def shots(self) -> np.ndarray:
        """Support examples per class (int64 ``[ways]``)."""
        return np.array([len(s) for s in self.support_indices], dtype=np.int64)

    @property
    def query(self) -> int:
        """Query examples per class (the same for every class)."""
        return len(self.query_indices[0]) if self.query_indices else 0

    @property
    def support_size(self) -> int:
        return int(sum(len(s) for s in self.support_indices))

    @property
    def query_size(self) -> int:
        return int(sum(len(q) for q in self.query_indices))


@dataclass
class _Plan:
    mode: str  # "flat" | "bilevel" | "dag"
    usable: np.ndarray
    groups: list[tuple[Any, np.ndarray]] = field(default_factory=list)


class EpisodeSampler:
    """Draws :class:`EpisodeDescription` s from one split of one source (see the module docstring).

    ``EpisodeSampler(spec, "train", seed=0)`` gives Meta-Dataset's variable-way variable-shot episodes;
    ``EpisodeSampler(spec, "test", seed=0, ways=5, shots=1, query=15)`` fixed 5-way 1-shot ones. Keyword
    arguments are :class:`EpisodeConfig` fields (or pass ``config``).
    """

    def __init__(self, spec: DatasetSpec, split: str, config: EpisodeConfig | None = None, *,
                 seed: int | np.random.Generator | None = None, **overrides: Any):
        try:
            config = replace(config or EpisodeConfig(), **overrides)
        except TypeError:
            unknown = sorted(set(overrides) - set(EpisodeConfig.__dataclass_fields__))
            raise ConfigError(f"unknown episode option {unknown[0]!r}: valid options are "
                              f"{', '.join(EpisodeConfig.__dataclass_fields__)}") from None
        config.check()
        self.spec = spec
        self.split = split_name(split)
        self.config = config
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        self._plan = self._make_plan()

    # -- set-up -------------------------------------------------------------------------------------------------

    def _min_images(self) -> int:
        c = self.config
        if c.shots is not None:
            return c.shots + (c.query or 1)
        return c.query + 1 if c.query is not None else 2

    def _where(self) -> str:
        return f"split {self.split} of source {self.spec.name!r}"

    def _make_plan(self) -> _Plan:
        c, spec = self.config, self.spec
        classes = spec.classes(self.split)
        need = self._min_images()
        usable = classes[spec.images(classes) >= need] if len(classes) else classes
        few = f"{len(usable)} of its {len(classes)} classes have at least {need} images"
        if c.ways is None and c.use_hierarchy and spec.kind == "bilevel":
            groups = []
            for sc in spec.superclasses(self.split).tolist():
                members = spec.superclass_classes[sc]
                members = members[spec.images(members) >= need]
                if len(members) >= c.min_ways:
                    groups.append((sc, members))
            if not groups:
                raise ConfigError(f"{self._where()} cannot supply an episode: no superclass has min_ways="
                                  f"{c.min_ways} classes with at least {need} images ({few}); lower min_ways "
                                  "or use another split")
            return _Plan("bilevel", usable, groups)
        if c.ways is None and c.use_hierarchy and spec.kind == "hierarchical":
            groups = list(spec.eligible_nodes(self.split, c.min_ways, c.max_spanning_leaves, usable))
            if not groups:
                raise ConfigError(f"{self._where()} cannot supply an episode: no DAG node spans between "
                                  f"min_ways={c.min_ways} and {c.max_spanning_leaves} usable leaves ({few}); "
                                  "lower min_ways or use another split")
            return _Plan("dag", usable, groups)
        if c.ways is not None and len(usable) < c.ways:
            raise ConfigError(f"{self._where()} cannot supply a {c.ways}-way episode: only {few}; ask for at "
                              f"most {len(usable)} ways, fewer shots/query, or use another split")
        if c.ways is None and len(usable) < c.min_ways:
            raise ConfigError(f"{self._where()} cannot supply an episode of min_ways={c.min_ways}: only {few}; "
                              "lower min_ways, set a fixed ways, or use another split")
        return _Plan("flat", usable)

    # -- drawing ------------------------------------------------------------------------------------------------

    def _ways(self, available: int) -> int:
        c = self.config
        return sample_num_ways(self.rng, available, c.min_ways, c.max_ways_upper_bound)

    def sample_classes(self) -> tuple[np.ndarray, Any]:
        """``(absolute class ids, group)`` of one episode (the class-selection rule of the module docstring)."""
        c, plan, rng = self.config, self._plan, self.rng
        if plan.mode == "bilevel":
            group, members = plan.groups[int(rng.integers(len(plan.groups)))]
            return rng.choice(members, self._ways(len(members)), replace=False), group
        if plan.mode == "dag":
            group, members = plan.groups[int(rng.integers(len(plan.groups)))]
            if len(members) > c.max_ways_upper_bound:
                members = rng.choice(members, c.max_ways_upper_bound, replace=False)
            return members.copy(), group
        ways = c.ways if c.ways is not None else self._ways(len(plan.usable))
        return rng.choice(plan.usable, ways, replace=False), None

    def sample_counts(self, classes: np.ndarray) -> tuple[np.ndarray, int]:
        """``(shots per class, query per class)`` for ``classes`` (the count rules of the module docstring)."""
        c = self.config
        images = self.spec.images(classes)
        query = c.query if c.query is not None else num_query(images, c.max_num_query, c.shots)
        if c.shots is not None:
            return np.full(len(classes), c.shots, dtype=np.int64), int(query)
        remaining = images - query
        size = sample_support_size(self.rng, remaining, c.max_support_size_contrib_per_class,
                                   c.max_support_set_size)
        return sample_shots(self.rng, images, remaining, size, c.min_log_weight, c.max_log_weight), int(query)

    def sample(self) -> EpisodeDescription:
        """One episode: classes, counts, and the record indices of every support and query example."""
        classes, group = self.sample_classes()
        classes = np.asarray(classes, dtype=np.int64)
        shots, query = self.sample_counts(classes)
        support, queries = [], []
        for n_support, n_images in zip(shots.tolist(), self.spec.images(classes).tolist()):
            picked = self.rng.choice(n_images, n_support + query, replace=False).astype(np.int64)
            support.append(picked[:n_support])
            queries.append(picked[n_support:])
        return EpisodeDescription(self.split, classes, support, queries,
                                  group if not isinstance(group, np.integer) else int(group))

    def __iter__(self) -> Iterator[EpisodeDescription]:
        while True:
            yield self.sample()
