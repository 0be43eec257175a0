"""``dataset_spec.json``: which classes each split has, how many images each class has, and the hierarchy.

Three ``__class__`` kinds (Meta-Dataset's ``data/dataset_spec.py`` and ``dataset_conversion/dataset_specs``):

* ``DatasetSpecification`` (flat): ``classes_per_split`` ``{"TRAIN": n_t, "VALID": n_v, "TEST": n_s}``;
  class ids are contiguous across splits, train first: TRAIN = ``0..n_t-1``, VALID = ``n_t..n_t+n_v-1``,
  TEST = the rest. ``images_per_class`` ``{"<id>": count}``; ``class_names`` ``{"<id>": name}`` (optional).
* ``BiLevelDatasetSpecification`` (Omniglot): ``superclasses_per_split`` (superclass ids contiguous
  train -> valid -> test), ``classes_per_superclass`` ``{"<superclass id>": n}`` (class ids contiguous in
  superclass order), ``superclass_names``, ``images_per_class``, ``class_names``.
* ``HierarchicalDatasetSpecification`` (ILSVRC): ``split_subgraphs`` ``{split: [{"wn_id", "words",
  "children_ids", "parents_ids"}, ...]}``; the classes of a split are the leaves (nodes without
  children) of its subgraph; class ids are contiguous train -> valid -> test, ``class_names`` maps
  ``"<id>"`` to the leaf's WordNet id (absent: the split's leaves sorted by WordNet id), and
  ``images_per_class`` is keyed by split, then WordNet id (internal nodes may be listed too).

Common keys: ``name``, ``path`` (where the records were written; ignored: the records are read from
the folder holding the spec), ``file_pattern`` (``"{}.tfrecords"``: class id -> file name).

For the DAG, a node *spans* the leaves reachable from it; an internal node is *eligible* for an
episode when it spans between ``min_ways`` and :data:`MAX_SPANNING_LEAVES_ELIGIBLE` (392) usable leaves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError

__all__ = ["SPLITS", "KINDS", "MAX_SPANNING_LEAVES_ELIGIBLE", "SPEC_FILE", "DagNode", "DatasetSpec", "split_name",
           "load_spec", "parse_spec", "write_spec", "flat_spec_json", "bilevel_spec_json",
           "hierarchical_spec_json"]

SPLITS = ("TRAIN", "VALID", "TEST")
#: ``__class__`` value -> short kind name.
KINDS = {"DatasetSpecification": "flat", "BiLevelDatasetSpecification": "bilevel",
         "HierarchicalDatasetSpecification": "hierarchical"}
#: Largest number of leaves an internal DAG node may span and still be drawn (Meta-Dataset's value: the
#: smallest bound for which every ILSVRC training leaf is reachable).
MAX_SPANNING_LEAVES_ELIGIBLE = 392
SPEC_FILE = "dataset_spec.json"
_SPLIT_ALIASES = {"train": "TRAIN", "valid": "VALID", "val": "VALID", "validation": "VALID", "test": "TEST"}
_FIX = "fix the file or re-create the records with 'innerloop data to-records'"


def split_name(split: str) -> str:
    """``"TRAIN"``, ``"VALID"`` or ``"TEST"`` for ``split`` (``train``, ``val``, ``valid``, ``test``, any case)."""
    key = str(split).strip()
    if key.startswith("Split."):
        key = key[len("Split."):]
    try:
        return _SPLIT_ALIASES[key.lower()]
    except KeyError:
        raise ConfigError(f"unknown split {split!r}: use train, valid or test") from None


@dataclass(frozen=True)
class DagNode:
    """One WordNet node of a split subgraph."""

    wn_id: str
    words: str
    children: tuple[str, ...]
    parents: tuple[str, ...]


@dataclass
class DatasetSpec:
    """A parsed ``dataset_spec.json``.

    ``split_classes[split]``: absolute class ids of the split (int64, ascending); ``images_per_class[c]``:
    images of class ``c``; ``superclass_*``: the bi-level hierarchy (empty otherwise); ``graphs[split]``:
    the split's DAG nodes by WordNet id and ``leaf_class[split]`` leaf WordNet id -> class id (hierarchical only).
    """

    name: str
    kind: str
    split_classes: dict[str, np.ndarray]
    images_per_class: np.ndarray
    class_names: list[str]
    file_pattern: str = "{}.tfrecords"
    path: Path | None = None
    superclass_splits: dict[str, np.ndarray] = field(default_factory=dict)
    superclass_classes: list[np.ndarray] = field(default_factory=list)
    superclass_names: list[str] = field(default_factory=list)
    graphs: dict[str, dict[str, DagNode]] = field(default_factory=dict)
    leaf_class: dict[str, dict[str, int]] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def num_classes(self) -> int:
        return len(self.images_per_class)

    def classes(self, split: str) -> np.ndarray:
        """Absolute class ids of ``split`` (any spelling :func:`split_name` accepts)."""
        return self.split_classes[split_name(split)]

    def images(self, class_ids: Any) -> np.ndarray:
        """Image counts of ``class_ids`` (int64 array)."""
        return self.images_per_class[np.asarray(class_ids, dtype=np.int64)]

    def superclasses(self, split: str) -> np.ndarray:
        """Superclass ids of ``split`` (bi-level specs; empty otherwise)."""
        return self.superclass_splits.get(split_name(split), np.zeros(0, dtype=np.int64))

    def leaves(self, split: str) -> list[str]:
        """WordNet ids of the leaves of ``split``'s subgraph, sorted (hierarchical specs)."""
        return sorted(self.leaf_class.get(split_name(split), {}))

    def spanning_leaves(self, split: str) -> dict[str, list[str]]:
        """Every node of ``split``'s DAG -> the WordNet ids of the leaves it spans, sorted."""
        return _spanning_leaves(self.graphs.get(split_name(split), {}))

    def eligible_nodes(self, split: str, min_ways: int = 5, max_leaves: int = MAX_SPANNING_LEAVES_ELIGIBLE,
                       usable: Any = None) -> list[tuple[str, np.ndarray]]:
        """``[(wn_id, class ids)]`` of the internal nodes spanning ``min_ways..max_leaves`` usable leaves.

        Nodes in WordNet-id order, each node's class ids in its leaves' WordNet-id order; ``usable`` (class
        ids) restricts which leaves count (default: all).
        """
        split = split_name(split)
        leaf_class = self.leaf_class.get(split, {})
        allowed = None if usable is None else set(int(c) for c in np.asarray(usable).ravel())
        out = []
        for node, leaves in sorted(self.spanning_leaves(split).items()):
            if node in leaf_class:
                continue  # a leaf is not an internal node
            ids = [leaf_class[w] for w in leaves if allowed is None or leaf_class[w] in allowed]
            if min_ways <= len(ids) <= max_leaves:
                out.append((node, np.array(ids, dtype=np.int64)))
        return out

    def record_path(self, class_id: int) -> Path:
        """The TFRecord file of ``class_id`` (``file_pattern`` in the spec's folder)."""
        if self.path is None:
            raise UserError(f"spec {self.name!r} was not loaded from a folder: no records to read")
        if self.file_pattern.count("{}") != 1:
            raise UserError(f"spec {self.path / SPEC_FILE} has file_pattern {self.file_pattern!r}: only one file "
                            "per class ('{}.tfrecords') is supported; re-create the records with "
                            "'innerloop data to-records'")
        return self.path / self.file_pattern.format(int(class_id))


def _spanning_leaves(graph: dict[str, DagNode]) -> dict[str, list[str]]:
    memo: dict[str, frozenset[str]] = {}

    def span(wn_id: str, stack: tuple[str, ...]) -> frozenset[str]:
        if wn_id in memo:
            return memo[wn_id]
        if wn_id in stack:
            raise UserError(f"the DAG has a cycle through {wn_id}; {_FIX}")
        children = [c for c in graph[wn_id].children if c in graph]
        if not children:
            result = frozenset([wn_id])
        else:
            result = frozenset().union(*(span(c, stack + (wn_id,)) for c in children))
        memo[wn_id] = result
        return result

    return {n: sorted(span(n, ())) for n in graph}


# -- parsing ----------------------------------------------------------------------------------------------------


class _Bad(Exception):
    pass


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value < 0:
        raise _Bad(f"{what} must be a non-negative integer, got {value!r}")
    return int(value)


def _mapping(data: dict, key: str) -> dict:
    if key not in data:
        raise _Bad(f"missing key {key!r}")
    value = data[key]
    if not isinstance(value, dict):
        raise _Bad(f"{key!r} must be an object, got {type(value).__name__}")
    return value


def _per_split(data: dict, key: str) -> dict[str, int]:
    raw = _mapping(data, key)
    out = {s: 0 for s in SPLITS}
    for k, v in raw.items():
        try:
            out[split_name(k)] = _int(v, f"{key}[{k!r}]")
        except ConfigError:
            raise _Bad(f"{key} has unknown split {k!r} (expected TRAIN, VALID, TEST)") from None
    return out


def _counts(mapping: dict, n: int, what: str) -> np.ndarray:
    out = np.zeros(n, dtype=np.int64)
    for i in range(n):
        if str(i) not in mapping:
            raise _Bad(f"{what} has no entry for id {i}")
        out[i] = _int(mapping[str(i)], f"{what}[{i!r}]")
    return out


def _names(data: dict, key: str, n: int) -> list[str]:
    raw = data.get(key) or {}
    if not isinstance(raw, dict):
        raise _Bad(f"{key!r} must be an object")
    return [str(raw.get(str(i), i)) for i in range(n)]


def _contiguous(counts: dict[str, int]) -> dict[str, np.ndarray]:
    out, start = {}, 0
    for s in SPLITS:
        out[s] = np.arange(start, start + counts[s], dtype=np.int64)
        start += counts[s]
    return out


def _parse_flat(data: dict) -> dict[str, Any]:
    per_split = _per_split(data, "classes_per_split")
    n = sum(per_split.values())
    return dict(split_classes=_contiguous(per_split),
                images_per_class=_counts(_mapping(data, "images_per_class"), n, "images_per_class"),
                class_names=_names(data, "class_names", n))


def _parse_bilevel(data: dict) -> dict[str, Any]:
    sc_per_split = _per_split(data, "superclasses_per_split")
    n_sc = sum(sc_per_split.values())
    per_sc = _counts(_mapping(data, "classes_per_superclass"), n_sc, "classes_per_superclass")
    starts = np.concatenate([[0], np.cumsum(per_sc)]).astype(np.int64)
    sc_classes = [np.arange(starts[i], starts[i + 1], dtype=np.int64) for i in range(n_sc)]
    sc_splits = _contiguous(sc_per_split)
    split_classes = {s: (np.concatenate([sc_classes[i] for i in ids]) if len(ids) else np.zeros(0, np.int64))
                     for s, ids in sc_splits.items()}
    n = int(starts[-1])
    return dict(split_classes=split_classes,
                images_per_class=_counts(_mapping(data, "images_per_class"), n, "images_per_class"),
                class_names=_names(data, "class_names", n), superclass_splits=sc_splits,
                superclass_classes=sc_classes, superclass_names=_names(data, "superclass_names", n_sc))


def _parse_node(node: Any, split: str) -> DagNode:
    if not isinstance(node, dict) or not isinstance(node.get("wn_id"), str):
        raise _Bad(f"split_subgraphs[{split!r}] has a node without a string 'wn_id': {str(node)[:80]}")
    children, parents = node.get("children_ids", []), node.get("parents_ids", [])
    if not isinstance(children, list) or not isinstance(parents, list):
        raise _Bad(f"node {node['wn_id']} of split {split}: children_ids and parents_ids must be lists")
    return DagNode(node["wn_id"], str(node.get("words", "")), tuple(map(str, children)), tuple(map(str, parents)))


def _parse_hierarchical(data: dict) -> dict[str, Any]:
    subgraphs = _mapping(data, "split_subgraphs")
    per_split_images = _mapping(data, "images_per_class")
    graphs: dict[str, dict[str, DagNode]] = {}
    for key, nodes in subgraphs.items():
        try:
            split = split_name(key)
        except ConfigError:
            raise _Bad(f"split_subgraphs has unknown split {key!r} (expected TRAIN, VALID, TEST)") from None
        if not isinstance(nodes, list):
            raise _Bad(f"split_subgraphs[{key!r}] must be a list of nodes")
        graphs[split] = {n.wn_id: n for n in (_parse_node(x, key) for x in nodes)}
    leaves = {s: sorted(w for w, n in graphs.get(s, {}).items() if not any(c in graphs[s] for c in n.children))
              for s in SPLITS}
    n = sum(len(v) for v in leaves.values())
    names_raw = data.get("class_names")
    if names_raw:
        if not isinstance(names_raw, dict):
            raise _Bad("'class_names' must be an object")
        names = [str(names_raw.get(str(i), "")) for i in range(n)]
    else:
        names = [w for s in SPLITS for w in leaves[s]]
    split_classes = _contiguous({s: len(leaves[s]) for s in SPLITS})
    images = np.zeros(n, dtype=np.int64)
    leaf_class: dict[str, dict[str, int]] = {}
    images_by_split: dict[str, Any] = {}
    for key, counts in per_split_images.items():
        try:
            images_by_split[split_name(key)] = counts
        except ConfigError:
            continue  # not a split: a leaf's count is then reported missing below
    for s in SPLITS:
        ids = split_classes[s]
        wn = [names[i] for i in ids]
        if sorted(wn) != leaves[s]:
            missing = sorted(set(leaves[s]) - set(wn))[:1] or sorted(set(wn) - set(leaves[s]))[:1]
            raise _Bad(f"class_names of the {s} ids ({ids[0] if len(ids) else '-'}..) are not the leaves of the "
                       f"{s} subgraph (first difference: {missing[0] if missing else '?'})")
        counts = images_by_split.get(s, {})
        if len(ids) and not isinstance(counts, dict):
            raise _Bad(f"images_per_class[{s!r}] must be an object keyed by WordNet id")
        for c, w in zip(ids.tolist(), wn):
            if w not in counts:
                raise _Bad(f"images_per_class[{s!r}] has no entry for leaf {w}")
            images[c] = _int(counts[w], f"images_per_class[{s!r}][{w!r}]")
        leaf_class[s] = dict(zip(wn, ids.tolist()))
    return dict(split_classes=split_classes, images_per_class=images, class_names=names, graphs=graphs,
                leaf_class=leaf_class)


_PARSERS = {"flat": _parse_flat, "bilevel": _parse_bilevel, "hierarchical": _parse_hierarchical}


def parse_spec(data: Any, *, where: str = SPEC_FILE, path: Path | None = None) -> DatasetSpec:
    """A :class:`DatasetSpec` from the JSON object ``data``; a one-line UserError naming ``where`` otherwise."""
    try:
        if not isinstance(data, dict):
            raise _Bad(f"expected a JSON object, got {type(data).__name__}")
        cls = data.get("__class__")
        if cls not in KINDS:
            raise _Bad(f"'__class__' is {cls!r}; expected one of {', '.join(KINDS)}")
        kind = KINDS[cls]
        fields = _PARSERS[kind](data)
        pattern = data.get("file_pattern", "{}.tfrecords")
        if not isinstance(pattern, str):
            raise _Bad("'file_pattern' must be a string")
    except _Bad as e:
        raise UserError(f"bad Meta-Dataset spec {where}: {e}; {_FIX}") from None
    name = str(data.get("name") or (path.name if path is not None else "source"))
    return DatasetSpec(name=name, kind=kind, file_pattern=pattern, path=path, raw=data, **fields)


def load_spec(path: str | Path) -> DatasetSpec:
    """Read ``dataset_spec.json`` (``path`` is the file or the records folder holding it)."""
    path = Path(path).expanduser()
    file = path / SPEC_FILE if path.is_dir() else path
    if not file.is_file():
        where = path if path.is_dir() else path.parent
        raise UserError(f"no {SPEC_FILE} in {where}: point to a Meta-Dataset records folder (one per source, "
                        "holding dataset_spec.json and {class_id}.tfrecords) or create one with "
                        "'innerloop data to-records'")
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"bad Meta-Dataset spec {file}: not readable JSON ({brief(e)}); {_FIX}") from None
    return parse_spec(data, where=str(file), path=file.parent)


def write_spec(data: dict[str, Any], folder: str | Path) -> Path:
    """Write the spec JSON object ``data`` (checked by :func:`parse_spec` first) as ``folder/dataset_spec.json``."""
    folder = Path(folder)
    parse_spec(data, where=str(folder / SPEC_FILE))
    out = folder / SPEC_FILE
    out.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return out


# -- building ---------------------------------------------------------------------------------------------------


def _split_counts(values: Any) -> dict[str, int]:
    if isinstance(values, dict):
        return {split_name(k): int(v) for k, v in values.items()}
    t, v, s = values
    return {"TRAIN": int(t), "VALID": int(v), "TEST": int(s)}


def flat_spec_json(name: str, classes_per_split: Any, images_per_class: Any, class_names: Any = None,
                   path: str = "") -> dict[str, Any]:
    """A ``DatasetSpecification`` object; ``classes_per_split`` is ``(train, valid, test)`` or a dict."""
    counts = [int(c) for c in images_per_class]
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    per_split = _split_counts(classes_per_split)
    return {"name": name, "classes_per_split": {s: per_split.get(s, 0) for s in SPLITS},
            "images_per_class": {str(i): c for i, c in enumerate(counts)},
            "class_names": {str(i): str(n) for i, n in enumerate(names)},
            "path": path, "file_pattern": "{}.tfrecords", "__class__": "DatasetSpecification"}


def bilevel_spec_json(name: str, superclasses_per_split: Any, classes_per_superclass: Any, images_per_class: Any,
                      superclass_names: Any = None, class_names: Any = None, path: str = "") -> dict[str, Any]:
    """A ``BiLevelDatasetSpecification`` object (superclasses and their classes in id order)."""
    per_sc = [int(c) for c in classes_per_superclass]
    counts = [int(c) for c in images_per_class]
    sc_names = list(superclass_names) if superclass_names is not None else [str(i) for i in range(len(per_sc))]
    names = list(class_names) if class_names is not None else [str(i) for i in range(len(counts))]
    per_split = _split_counts(superclasses_per_split)
    return {"name": name, "superclasses_per_split": {s: per_split.get(s, 0) for s in SPLITS},
            "classes_per_superclass": {str(i): c for i, c in enumerate(per_sc)},
            "images_per_class": {str(i): c for i, c in enumerate(counts)},
            "superclass_names": {str(i): str(n) for i, n in enumerate(sc_names)},
            "class_names": {str(i): str(n) for i, n in enumerate(names)},
            "path": path, "file_pattern": "{}.tfrecords", "__class__": "BiLevelDatasetSpecification"}


def hierarchical_spec_json(name: str, split_subgraphs: dict[str, list[dict[str, Any]]],
                           images_per_leaf: dict[str, dict[str, int]], path: str = "") -> dict[str, Any]:
    """A ``HierarchicalDatasetSpecification`` object; class ids: each split's leaves in WordNet-id order."""
    subgraphs = {split_name(k): v for k, v in split_subgraphs.items()}
    names: list[str] = []
    for s in SPLITS:
        nodes = subgraphs.get(s, [])
        ids = {n["wn_id"] for n in nodes}
        names += sorted(n["wn_id"] for n in nodes if not any(c in ids for c in n.get("children_ids", [])))
    return {"name": name, "split_subgraphs": {s: subgraphs.get(s, []) for s in SPLITS},
            "images_per_class": {split_name(k): dict(v) for k, v in images_per_leaf.items()},
            "class_names": {str(i): w for i, w in enumerate(names)},
            "path": path, "file_pattern": "{}.tfrecords", "__class__": "HierarchicalDatasetSpecification"}
