"""Public preprocessing: the same numbers as the readers + training's scaling, on real files; input types; errors."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from innerloop.config import Config
from innerloop.data import READERS, load_dataset, preprocess, preprocess_batch, preprocess_batch_for, preprocess_for
from innerloop.data.preprocess import MODES, default_size, settings_for
from innerloop.errors import ConfigError, UserError
from innerloop.tasks import EpisodeTasks
from tests.data.conftest import random_image, shared, write_image

#: A committed Omniglot run (5-way 1-shot MAML, 28x28 grayscale): loads without data.
RUN = Path(__file__).resolve().parents[2] / "results" / "omniglot" / "runs" / "5w1s-maml"
#: Characters of both Omniglot image sets (the split file below lists them; a whole split is not decoded).
CHARACTERS = {"Gurmukhi/character42": "images_evaluation", "Kannada/character01": "images_evaluation",
              "Latin/character05": "images_background"}


def _float(images: np.ndarray, normalize: str = "none") -> torch.Tensor:
    """What training feeds the model for uint8 ``[N, C, H, W]`` images: EpisodeTasks' own conversion."""
    from innerloop.build import IMAGENET_MEAN, IMAGENET_STD
    from innerloop.data.base import ImageDataset

    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if normalize == "imagenet" else (None, None)
    blank = ImageDataset(np.zeros((32, *images.shape[1:]), np.uint8), np.repeat([0, 1], 16), ["a", "b"], "blank")
    return EpisodeTasks(blank, 2, 1, 1, mean=mean, std=std)._float(torch.from_numpy(images))


@pytest.fixture(scope="module")
def omniglot(tmp_path_factory):
    """(root, {(character, drawing index): PNG bytes}, split file) for three characters."""
    root = shared("omniglot")
    split = tmp_path_factory.mktemp("omniglot-split") / "three.txt"
    split.write_text("".join(f"{c}/rot000\n" for c in CHARACTERS))
    pngs = {}
    for char, set_name in CHARACTERS.items():
        with zipfile.ZipFile(root / f"{set_name}.zip") as z:
            members = sorted(n for n in z.namelist() if n.startswith(f"{set_name}/{char}/") and n.endswith(".png"))
            for j, member in enumerate(members):
                pngs[char, j] = z.read(member)
    return root, pngs, split


@pytest.mark.parametrize("options", [{}, {"image_size": 32, "resample": "bilinear"}, {"image_size": [20, 24]}])
def test_omniglot_equals_the_reader(omniglot, options):
    root, pngs, split = omniglot
    ds = load_dataset("omniglot", root, "test", cache=False, split_file=split, rotations=False, **options)
    assert ds.class_names == [f"{c}/rot000" for c in CHARACTERS]
    for label, char in enumerate(CHARACTERS):
        for j in (0, 7, 19):
            expected = _float(ds.images[label * 20 + j][None])[0]
            got = preprocess("omniglot", pngs[char, j], **options)
            assert got.dtype == torch.float32 and got.shape == expected.shape
            assert torch.equal(got, expected), (char, j, options)


def test_omniglot_input_types_agree(omniglot, tmp_path):
    _, pngs, _ = omniglot
    png = pngs["Kannada/character01", 3]
    path = tmp_path / "drawing.png"
    path.write_bytes(png)
    pil = Image.open(io.BytesIO(png))
    as_array = np.asarray(Image.open(io.BytesIO(png)).convert("L"))  # the file's pixels: dark ink on white
    reference = preprocess("omniglot", png)
    for image in (path, str(path), bytearray(png), memoryview(png), pil, as_array, as_array[..., None]):
        assert torch.equal(preprocess("omniglot", image), reference), type(image)
    assert reference.shape == (1, 28, 28) and reference.max() == 1.0 and reference.mean() < 0.3  # ink bright


def test_mnist_equals_the_reader():
    root = shared("mnist")
    picks = [0, 1, 4242, 9999]
    for options in ({}, {"image_size": 32}):
        ds = load_dataset("mnist", root, "test", cache=False, **options)
        raw = load_dataset("mnist", root, "test", cache=False) if options else ds
        for i in picks:
            digit = raw.images[i, 0]  # the stored 28x28 digit, as a user's file would hold it
            expected = _float(ds.images[i][None])[0]
            buf = io.BytesIO()
            Image.fromarray(digit).save(buf, format="PNG")
            assert torch.equal(preprocess("mnist", digit, **options), expected)
            assert torch.equal(preprocess("mnist", buf.getvalue(), **options), expected)


@pytest.mark.parametrize("normalize", ["none", "imagenet"])
def test_cifar10_equals_the_reader_and_training_scaling(normalize):
    root = shared("cifar10")
    picks = [0, 17, 999]
    for options in ({}, {"image_size": 28}):
        ds = load_dataset("cifar10", root, "test", cache=False, **options)
        raw = load_dataset("cifar10", root, "test", cache=False) if options else ds
        hwc = [raw.images[i].transpose(1, 2, 0) for i in picks]
        expected = _float(ds.images[picks], normalize)
        got = preprocess_batch("cifar10", hwc, normalize=normalize, **options)
        assert got.shape == expected.shape and torch.equal(got, expected)
        png = io.BytesIO()
        Image.fromarray(hwc[1]).save(png, format="PNG")
        assert torch.equal(preprocess("cifar10", png.getvalue(), normalize=normalize, **options), expected[1])
        rgba = np.concatenate([hwc[1], np.full((*hwc[1].shape[:2], 1), 255, np.uint8)], axis=2)
        assert torch.equal(preprocess("cifar10", rgba, normalize=normalize, **options), expected[1])


def _photos(tmp_path, rng, names_per_class):
    """Small JPEG/PNG photos of different sizes: ``{class: [paths]}`` under ``tmp_path/images``."""
    out = {}
    for cls, names in names_per_class.items():
        out[cls] = [write_image(tmp_path / "images" / cls / name, random_image(rng, 40 + 9 * k, 70 - 5 * k))
                    for k, name in enumerate(names)]
    return out


def test_folder_cub_and_miniimagenet_equal_their_readers(tmp_path):
    rng = np.random.default_rng(0)
    photos = _photos(tmp_path, rng, {"n01": ["a.jpg", "b.png"], "n02": ["c.jpg", "d.jpg"]})
    files = [p for group in photos.values() for p in group]
    folder = tmp_path / "images"
    for options in ({}, {"image_size": 32}, {"image_size": 30, "mode": "grayscale"}):
        ds = load_dataset("folder", folder, "all", cache=False, **options)
        assert torch.equal(preprocess_batch("folder", files, **options), _float(ds.images))
    ds = load_dataset("cub", tmp_path, "all", cache=False, image_size=40)
    assert torch.equal(preprocess_batch("cub", files, image_size=40), _float(ds.images))
    (tmp_path / "test.csv").write_text("filename,label\n" + "".join(f"{c}/{p.name},{c}\n"
                                                                  for c, g in photos.items() for p in g))
    ds = load_dataset("miniimagenet", tmp_path, "test", cache=False)
    assert torch.equal(preprocess_batch("miniimagenet", files, normalize="imagenet"), _float(ds.images, "imagenet"))
    assert ds.images.shape[2:] == default_size("miniimagenet") == (84, 84)


def test_batch_shapes_and_defaults():
    assert preprocess_batch("omniglot", []).shape == (0, 1, 28, 28)
    assert preprocess_batch("cifar10", [], image_size=[20, 24]).shape == (0, 3, 20, 24)
    assert preprocess_batch("folder", [], mode="L").shape == (0, 1, 84, 84)
    gray = np.full((50, 60), 200, np.uint8)
    assert preprocess("mnist", gray, image_size=0).shape == (1, 28, 28)  # 0 = the reader's default, as task.image_size
    assert preprocess("cub", gray).shape == (3, 84, 84)  # grayscale converted to the dataset's RGB
    assert preprocess("omniglot", gray)[0, 5, 5] == pytest.approx(55 / 255)  # inverted
    assert set(MODES) == set(READERS)


def test_preprocess_for_a_config_and_a_loaded_run(omniglot):
    import innerloop

    _, pngs, _ = omniglot
    png = pngs["Latin/character05", 0]
    meta = innerloop.load(RUN)
    assert settings_for(meta) == {"name": "omniglot", "image_size": 28, "normalize": "none"}
    assert torch.equal(preprocess_for(meta, png), preprocess("omniglot", png))
    assert torch.equal(preprocess_batch_for(meta.config, [png, png]), preprocess_batch("omniglot", [png, png]))
    cfg = Config()
    cfg.task.family, cfg.task.dataset, cfg.task.normalize = "episodes", "cifar10", "imagenet"
    photo = random_image(np.random.default_rng(1), 50, 40)
    assert torch.equal(preprocess_for(cfg, photo), preprocess("cifar10", photo, 32, "imagenet"))
    for family in ("sinusoid", "incongruous", "uap"):
        cfg.task.family = family
        with pytest.raises(ConfigError, match=f"task.family is '{family}', not image classification"):
            preprocess_for(cfg, photo)
    with pytest.raises(ConfigError, match="expected an innerloop Config"):
        settings_for(object())


@pytest.mark.parametrize("call, error, fragment", [
    (lambda g: preprocess("imagenet", g), ConfigError, "unknown dataset 'imagenet': use one of omniglot, mnist"),
    (lambda g: preprocess("cifar10", g, normalize="zscore"), ConfigError, "unknown normalize 'zscore'"),
    (lambda g: preprocess("mnist", g, normalize="imagenet"), ConfigError, "takes RGB images"),
    (lambda g: preprocess("cifar10", g, mode="grayscale"), ConfigError, "'folder' dataset only"),
    (lambda g: preprocess("folder", g, mode="cmyk"), ConfigError, "unknown colour mode"),
    (lambda g: preprocess("mnist", g, image_size=-3), ConfigError, "image_size must be positive"),
    (lambda g: preprocess("mnist", g, resample="cubic"), ConfigError, "unknown resample filter"),
    (lambda g: preprocess("mnist", g.astype(np.float32)), UserError, "has dtype float32: pass uint8"),
    (lambda g: preprocess("mnist", g[None]), UserError, "expected an image array [H, W] or [H, W, C]"),
    (lambda g: preprocess("mnist", g[:, :0]), UserError, "expected an image array"),
    (lambda g: preprocess("mnist", torch.zeros(28, 28)), UserError, "object of type Tensor"),
    (lambda g: preprocess("mnist", b"not an image"), UserError, "cannot decode image image bytes"),
    (lambda g: preprocess("mnist", "/nonexistent/digit.png"), UserError, "image not found: /nonexistent/digit.png"),
    (lambda g: preprocess_batch("mnist", [g], what=["a", "b"]), ConfigError, "what names 2 images but 1"),
])
def test_errors_are_one_line(call, error, fragment):
    with pytest.raises(error) as info:
        call(np.zeros((28, 28), np.uint8))
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_unreadable_file_error_names_it(tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(UserError, match=f"cannot decode image {bad}"):
        preprocess_batch("omniglot", [np.zeros((5, 5), np.uint8), bad])
