"""Every shipped ALFA Table 1 / 2 / 4 config trains and evaluates on generated data in its dataset's real format.

The fixtures are tiny (a few classes, 6 images each) in the on-disk formats users have: the
miniImageNet pickle cache, tieredImageNet's PNG pickles and the CUB-200-2011 image tree with the
real class split. For speed the run overrides only sizes (image size, queries, steps, iterations),
never the dataset, format, backbone or method.
"""

import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from innerloop import config
from innerloop.evaluate import evaluate_run
from innerloop.train import train

SHARED = Path(os.environ.get("INNERLOOP_SHARED_DATA", "/work/shared/data"))
ALFA_CONFIGS = sorted(n for n in config.list_shipped() if n.startswith("alfa/"))


def _image(rng, size=84):
    return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    mini = root / "miniimagenet"
    mini.mkdir()
    for split in ("train", "test"):  # 20 classes for the 20-way rows
        images = np.stack([_image(rng) for _ in range(20 * 6)])
        class_dict = {f"n{split}{c:05d}": list(range(6 * c, 6 * c + 6)) for c in range(20)}
        with open(mini / f"mini-imagenet-cache-{split}.pkl", "wb") as f:
            pickle.dump({"image_data": images, "class_dict": class_dict}, f, protocol=4)
    tiered = root / "tieredimagenet"
    tiered.mkdir()
    for split in ("train", "test"):
        pngs = []
        for _ in range(5 * 6):
            buf = io.BytesIO()
            Image.fromarray(_image(rng)).save(buf, format="PNG")
            pngs.append(np.frombuffer(buf.getvalue(), dtype=np.uint8).reshape(-1, 1))
        with open(tiered / f"{split}_images_png.pkl", "wb") as f:
            pickle.dump(pngs, f, protocol=2)
        labels = {b"label_specific": np.repeat(np.arange(5), 6).astype(np.int32),
                  b"label_general": np.zeros(30, np.int32),
                  b"label_specific_str": [f"s{c}".encode() for c in range(5)], b"label_general_str": [b"g"]}
        with open(tiered / f"{split}_labels.pkl", "wb") as f:
            pickle.dump(labels, f, protocol=2)
    splits = SHARED / "cub" / "splits" / "torchmeta"
    if not splits.is_dir():
        pytest.skip("shared CUB split files not present")
    cub = root / "cub"
    for name in json.loads((splits / "test.json").read_text()):
        folder = cub / "CUB_200_2011" / "images" / name
        folder.mkdir(parents=True)
        for i in range(6):
            Image.fromarray(_image(rng, 32)).save(folder / f"img_{i}.jpg")
    (cub / "splits" / "torchmeta").mkdir(parents=True)
    for split in ("train", "val", "test"):
        (cub / "splits" / "torchmeta" / f"{split}.json").write_bytes((splits / f"{split}.json").read_bytes())
    return root


def test_every_table_row_has_a_config():
    # Table 1: 2 datasets x 2 backbones x 2 shots x 6 methods; Table 2: 2 backbones x 5; Table 4: 2 shots x 2;
    # MeTAL and MeTAL+ALFA on Table 1's miniImageNet layouts: 2 backbones x 2 shots x 2
    assert len(ALFA_CONFIGS) == 48 + 10 + 4 + 8
    metal = [n for n in ALFA_CONFIGS if "-metal" in n]
    assert len(metal) == 8 and all(config.load(n).objective.inner_loss == "metal" for n in metal)


@pytest.mark.parametrize("name", ALFA_CONFIGS)
def test_config_runs_on_its_dataset_format(name, data_root, tmp_path, monkeypatch):
    monkeypatch.setenv("INNERLOOP_DATA", str(data_root))
    monkeypatch.setenv("INNERLOOP_CACHE", str(data_root / "_cache"))
    cfg = config.load(name)
    assert cfg.inner.steps == 5 and cfg.task.query == 15 and cfg.eval.tasks == 600  # the authors' protocol
    fast = ["task.image_size=16", "task.query=1", "task.eval_query=1", "inner.steps=1", "train.meta_batch=1",
            "eval.tasks=2", "train.log_every=1", "train.checkpoint_every=1"]
    if cfg.train.iterations:
        fast.append("train.iterations=1")
    cfg = config.load(name, fast)
    summary = train(cfg, tmp_path / "run", progress=False)
    assert summary["iterations"] == cfg.train.iterations
    result = evaluate_run(tmp_path / "run")
    assert result["metric"] == "accuracy" and result["tasks"] == 2 and 0 <= result["mean"] <= 100
