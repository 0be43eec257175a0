"""Tiny, format-exact Meta-Dataset sources for the tests (written at test time; no real records exist publicly).

Each fixture writes ``{class_id}.tfrecords`` (framed records with correct masked CRC-32Cs, each a
``tf.train.Example`` with a real PNG ``image`` and ``label`` = class id) and a ``dataset_spec.json`` of one
of the three kinds. Every image is a solid colour that encodes ``(class id, record index)``
(:func:`pixel`), so a test can tell which record an episode image came from, even after a resize.

The ``toy_*_spec`` functions build count-only specs (no files) shaped like the real ones, for the
sampler statistics.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from innerloop.data.metadataset.records import encode_example, write_records
from innerloop.data.metadataset.spec import (DatasetSpec, bilevel_spec_json, flat_spec_json, hierarchical_spec_json,
                                             parse_spec, write_spec)

SIZE = (6, 5)  # stored images: height 6, width 5


def pixel(class_id: int, index: int, mode: str) -> tuple[int, ...] | int:
    """The solid colour of record ``index`` of class ``class_id`` (RGB triple or grey level)."""
    if mode == "L":
        return (class_id * 11 + index) % 256
    return (class_id % 256, index % 256, (class_id * 7 + 3) % 256)


def png(class_id: int, index: int, mode: str) -> bytes:
    """PNG bytes of the fixture image of ``(class_id, index)``."""
    buffer = io.BytesIO()
    Image.new(mode, (SIZE[1], SIZE[0]), pixel(class_id, index, mode)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_records_for(folder: Path, spec: DatasetSpec, mode: str, packed: bool = True) -> dict[int, list[bytes]]:
    """Write every class file of ``spec`` into ``folder``; returns class id -> the PNG bytes written, in order."""
    written = {}
    for class_id, count in enumerate(spec.images_per_class.tolist()):
        images = [png(class_id, i, mode) for i in range(count)]
        write_records(folder / f"{class_id}.tfrecords", (encode_example(b, class_id, packed=packed) for b in images))
        written[class_id] = images
    return written


def _write(folder: Path, data: dict, mode: str, packed: bool = True) -> tuple[DatasetSpec, dict[int, list[bytes]]]:
    folder.mkdir(parents=True, exist_ok=True)
    write_spec(data, folder)
    spec = parse_spec(data, path=folder)
    return spec, write_records_for(folder, spec, mode, packed)


def flat_json(name: str = "flat") -> dict:
    """16 classes: TRAIN 6, VALID 5, TEST 5; 4..8 images each."""
    counts = [4 + c % 5 for c in range(16)]
    return flat_spec_json(name, (6, 5, 5), counts, [f"class{c}" for c in range(16)])


def bilevel_json(name: str = "bilevel") -> dict:
    """Omniglot-shaped: alphabets of 5 and 7 characters (TRAIN), 5 (VALID), 6 (TEST); 4..6 drawings each."""
    per_alphabet = [5, 7, 5, 6]
    n = sum(per_alphabet)
    return bilevel_spec_json(name, (2, 1, 1), per_alphabet, [4 + c % 3 for c in range(n)],
                             ["Alpha", "Beta", "Gamma", "Delta"], [f"char{c}" for c in range(n)])


def _node(wn_id: str, children: list[str], parents: list[str]) -> dict:
    return {"wn_id": wn_id, "words": wn_id.upper(), "children_ids": children, "parents_ids": parents}


def dag_json(name: str = "dag") -> dict:
    """ILSVRC-shaped: TRAIN root -> {a: 5 leaves, b: 3 leaves}, plus node s over 2 leaves of a and 2 of b (so
    leaves have two parents); VALID root -> 5 leaves; TEST root -> 6 leaves. 4..7 images per leaf."""
    t_leaves = [f"n1{i:07d}" for i in range(8)]
    train = [_node("n0000000", ["n0000001", "n0000002", "n0000003"], []),
             _node("n0000001", t_leaves[:5], ["n0000000"]),
             _node("n0000002", t_leaves[5:], ["n0000000"]),
             _node("n0000003", [t_leaves[0], t_leaves[1], t_leaves[5], t_leaves[6]], ["n0000000"])]
    for i, leaf in enumerate(t_leaves):
        parents = ["n0000001" if i < 5 else "n0000002"] + (["n0000003"] if i in (0, 1, 5, 6) else [])
        train.append(_node(leaf, [], parents))
    graphs = {"TRAIN": train}
    for split, root, n, prefix in (("VALID", "n2000000", 5, "n3"), ("TEST", "n4000000", 6, "n5")):
        leaves = [f"{prefix}{i:07d}" for i in range(n)]
        graphs[split] = [_node(root, leaves, [])] + [_node(w, [], [root]) for w in leaves]
    images = {}
    k = 0
    for split, nodes in graphs.items():
        images[split] = {}
        for node in nodes:
            if not node["children_ids"]:
                images[split][node["wn_id"]] = 4 + k % 4
                k += 1
        images[split][nodes[0]["wn_id"]] = 999  # internal nodes may be listed too (ILSVRC's spec does)
    return hierarchical_spec_json(name, graphs, images)


def write_flat(folder: Path, packed: bool = True) -> tuple[DatasetSpec, dict[int, list[bytes]]]:
    """A flat source of RGB PNGs in ``folder``."""
    return _write(folder, flat_json(), "RGB", packed)


def write_bilevel(folder: Path) -> tuple[DatasetSpec, dict[int, list[bytes]]]:
    """A bi-level source of grayscale PNGs (as Omniglot's) in ``folder``."""
    return _write(folder, bilevel_json(), "L")


def write_dag(folder: Path) -> tuple[DatasetSpec, dict[int, list[bytes]]]:
    """A hierarchical source of RGB PNGs in ``folder``."""
    return _write(folder, dag_json(), "RGB")


WRITERS = {"flat": (write_flat, "RGB"), "bilevel": (write_bilevel, "L"), "hierarchical": (write_dag, "RGB")}


# -- count-only specs for the sampler statistics ----------------------------------------------------------------


def toy_flat_spec() -> DatasetSpec:
    """TRAIN 60 classes with 6..400 images (varied), VALID 3 classes, TEST 0."""
    rng = np.random.default_rng(7)
    counts = rng.integers(6, 401, size=63).tolist()
    return parse_spec(flat_spec_json("toy-flat", (60, 3, 0), counts))


def toy_bilevel_spec() -> DatasetSpec:
    """TRAIN alphabets of 3 (too few for min_ways=5), 5, 8, 20 and 70 characters; 20 images each; VALID 1 of 6."""
    per = [3, 5, 8, 20, 70, 6]
    return parse_spec(bilevel_spec_json("toy-bilevel", (5, 1, 0), per, [20] * sum(per)))


def toy_dag_spec() -> DatasetSpec:
    """TRAIN: 400 leaves under the root (too many: not eligible); ``mid`` spans 60 (drawn, subsampled to 50),
    ``small`` 7, ``tiny`` 3 (too few), ``shared`` 5 leaves also under mid/small/tiny (a DAG). VALID, TEST: 1 node."""
    leaves = [f"n9{i:07d}" for i in range(400)]
    root, mid, small, tiny, shared = "n0000001", "n0000010", "n0000020", "n0000030", "n0000040"
    groups = {mid: leaves[:60], small: leaves[60:67], tiny: leaves[67:70], shared: [leaves[5], leaves[6], leaves[65],
                                                                                    leaves[66], leaves[68]]}
    parents: dict[str, list[str]] = {w: [] for w in leaves}
    for node, members in groups.items():
        for w in members:
            parents[w].append(node)
    for w in leaves[70:]:
        parents[w].append(root)
    train = [_node(root, [mid, small, tiny, shared] + leaves[70:], [])]
    train += [_node(node, members, [root]) for node, members in groups.items()]
    train += [_node(w, [], parents[w]) for w in leaves]
    images = {"TRAIN": {w: 20 + (i % 50) * 10 for i, w in enumerate(leaves)}}
    graphs = {"TRAIN": train}
    for split, prefix in (("VALID", "n7"), ("TEST", "n8")):
        ls = [f"{prefix}{i:07d}" for i in range(6)]
        graphs[split] = [_node(f"{prefix}0000000x", ls, [])] + [_node(w, [], [f"{prefix}0000000x"]) for w in ls]
        images[split] = {w: 30 for w in ls}
    return parse_spec(hierarchical_spec_json("toy-dag", graphs, images))


TOY_DAG_GROUPS = {"n0000010": 60, "n0000020": 7, "n0000040": 5}
