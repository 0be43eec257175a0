"""Verified downloads against a local HTTP server (never the internet): checksums, safe extraction, cleanup."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from innerloop.data import download, load_dataset
from innerloop.data.download import Resource
from innerloop.errors import ConfigError, UserError
from tests.data.conftest import shared


def _tree(path: Path) -> list[str]:
    """Everything under ``path`` (relative names), to prove nothing was left behind."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.exists() else []


def _sha(path: Path) -> str:
    return download.sha256_file(path)


@pytest.fixture(autouse=True)
def _no_internet(monkeypatch):
    """Any URL that is not the local server or a file fails loudly."""
    real = download.urllib.request.urlopen

    def guarded(request, *args, **kwargs):
        url = request.full_url if hasattr(request, "full_url") else request
        assert url.startswith(("http://127.0.0.1:", "file://")), f"test tried to reach {url}"
        return real(request, *args, **kwargs)

    monkeypatch.setattr(download.urllib.request, "urlopen", guarded)


def _fake_dataset(monkeypatch, *resources: Resource, name: str = "fake") -> str:
    monkeypatch.setitem(download.DATASETS, name, list(resources))
    return name


def test_download_file_success_mismatch_and_short_read(server, tmp_path):
    (server.directory / "f.bin").write_bytes(b"hello" * 1000)
    good = _sha(server.directory / "f.bin")
    dest = tmp_path / "out" / "f.bin"
    download.download_file(f"{server.url}/f.bin", dest, good)
    assert dest.read_bytes() == b"hello" * 1000 and _tree(dest.parent) == ["f.bin"]
    with pytest.raises(UserError, match="checksum mismatch") as err:
        download.download_file(f"{server.url}/f.bin", tmp_path / "out2" / "f.bin", "0" * 64)
    assert "\n" not in str(err.value) and _tree(tmp_path / "out2") == []
    with pytest.raises(UserError, match="truncated|failed"):
        download.download_file(f"{server.url}/short/1000", tmp_path / "out3" / "f.bin", good)
    assert _tree(tmp_path / "out3") == []
    with pytest.raises(UserError, match="failed"):
        download.download_file(f"{server.url}/missing.bin", tmp_path / "out4" / "f.bin", good)
    assert _tree(tmp_path / "out4") == []


def test_mnist_download_from_a_mirror_then_load(server, tmp_path):
    mnist = shared("mnist")
    for f in mnist.iterdir():
        shutil.copy(f, server.directory / f.name)
    # the shared .gz files are not byte-identical to the canonical ones, so give their own checksums
    shas = {f.name: _sha(f) for f in mnist.iterdir() if f.suffix == ".gz"}
    root = tmp_path / "mnist"
    placed = download.download("mnist", root, sha256=shas, mirror=server.url)
    assert sorted(p.name for p in placed) == sorted(shas) and _tree(root) == sorted(shas)
    assert np.bincount(load_dataset("mnist", root, "test", cache_dir=tmp_path / "c").labels).sum() == 10000
    assert download.download("mnist", root, sha256=shas, mirror=server.url) == []  # already present


def test_one_bad_file_leaves_nothing_at_all(server, tmp_path):
    mnist = shared("mnist")
    for f in mnist.iterdir():
        shutil.copy(f, server.directory / f.name)
    shas = {f.name: _sha(f) for f in mnist.iterdir() if f.suffix == ".gz"}
    shas["t10k-labels-idx1-ubyte.gz"] = "1" * 64
    root = tmp_path / "new-root"
    with pytest.raises(UserError, match="t10k-labels"):
        download.download("mnist", root, sha256=shas, mirror=server.url)
    assert not root.exists()  # created by the download, removed again
    kept = tmp_path / "existing"
    kept.mkdir()
    (kept / "mine.txt").write_text("keep me")
    with pytest.raises(UserError):
        download.download("mnist", kept, sha256=shas, mirror=server.url)
    assert _tree(kept) == ["mine.txt"]


def test_omniglot_mirror_verifies_the_recorded_split_file_checksums(server, tmp_path):
    omni = shared("omniglot")
    for name in ("images_background.zip", "images_evaluation.zip"):
        shutil.copy(omni / name, server.directory / name)
    shutil.copytree(omni / "splits" / "vinyals", server.directory / "splits" / "vinyals")
    zips = {n: _sha(omni / n) for n in ("images_background.zip", "images_evaluation.zip")}  # repacked zips
    root = tmp_path / "omniglot"
    placed = download.download("omniglot", root, sha256=zips, mirror=server.url)
    assert len(placed) == 6
    assert _tree(root) == ["images_background.zip", "images_evaluation.zip", "splits", "splits/vinyals",
                           "splits/vinyals/test.txt", "splits/vinyals/train.txt", "splits/vinyals/trainval.txt",
                           "splits/vinyals/val.txt"]


def test_missing_split_file_on_the_mirror_leaves_nothing(server, tmp_path):
    omni = shared("omniglot")
    for name in ("images_background.zip", "images_evaluation.zip"):
        shutil.copy(omni / name, server.directory / name)
    shutil.copytree(omni / "splits" / "vinyals", server.directory / "splits" / "vinyals")
    (server.directory / "splits" / "vinyals" / "val.txt").unlink()
    zips = {n: _sha(omni / n) for n in ("images_background.zip", "images_evaluation.zip")}
    root = tmp_path / "omniglot"
    with pytest.raises(UserError, match="val.txt failed.*404") as err:
        download.download("omniglot", root, sha256=zips, mirror=server.url)
    assert "\n" not in str(err.value) and not root.exists()


def test_unknown_checksum_requires_the_user_to_pass_one(server, tmp_path, monkeypatch):
    (server.directory / "data.bin").write_bytes(b"payload")
    name = _fake_dataset(monkeypatch, Resource("https://example.invalid/data.bin", "data.bin", None))
    root = tmp_path / "r"
    with pytest.raises(UserError, match="no confirmed SHA-256.*--sha256 data.bin=HEX") as err:
        download.download(name, root, mirror=server.url)
    assert "\n" not in str(err.value) and not root.exists()
    download.download(name, root, sha256=_sha(server.directory / "data.bin"), mirror=server.url)
    assert (root / "data.bin").read_bytes() == b"payload"
    with pytest.raises(ConfigError, match="64 hex"):
        download.download(name, tmp_path / "r2", sha256="xyz", mirror=server.url)


def _tar_gz(path: Path, members: dict[str, bytes], links: dict[str, tuple[str, bytes]] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, (target, kind) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            tar.addfile(info)
    return path


def _archive_dataset(monkeypatch, server, archive: Path, provides="cifar-10-batches-py"):
    shutil.copy(archive, server.directory / archive.name)
    return _fake_dataset(monkeypatch, Resource("https://example.invalid/" + archive.name, archive.name,
                                               _sha(archive), extract=True, provides=provides))


def test_archive_is_extracted_into_place_and_not_kept(server, tmp_path, monkeypatch):
    archive = _tar_gz(tmp_path / "cifar-10-python.tar.gz", {"cifar-10-batches-py/readme.html": b"<p>",
                                                            "cifar-10-batches-py/test_batch": b"x" * 100},
                      {"cifar-10-batches-py/sub": ("", tarfile.DIRTYPE)})
    name = _archive_dataset(monkeypatch, server, archive)
    root = tmp_path / "root"
    download.download(name, root, mirror=server.url)
    assert _tree(root) == ["cifar-10-batches-py", "cifar-10-batches-py/readme.html", "cifar-10-batches-py/sub",
                           "cifar-10-batches-py/test_batch"]
    assert (root / "cifar-10-batches-py" / "test_batch").read_bytes() == b"x" * 100
    assert (root / "cifar-10-batches-py" / "test_batch").stat().st_mode & 0o7777 == 0o644


def test_extraction_drops_setuid_bits_and_keeps_the_modification_time(tmp_path):
    archive = tmp_path / "a.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("d/tool")
        info.size, info.mode, info.mtime = 3, 0o4777, 1_000_000_000
        tar.addfile(info, io.BytesIO(b"abc"))
    assert download.safe_extract(archive, tmp_path / "out") == [tmp_path / "out" / "d"]
    st = (tmp_path / "out" / "d" / "tool").stat()
    assert st.st_mode & 0o7777 == 0o755 and st.st_mtime == 1_000_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tar", "out"]  # no temporary folder left


@pytest.mark.parametrize("members,links,why", [
    ({"cifar-10-batches-py/ok": b"1", "../evil": b"!"}, None, r"'\.\.' in path"),
    ({"cifar-10-batches-py/ok": b"1", "/tmp/innerloop-evil-abs": b"!"}, None, "absolute path"),
    ({"cifar-10-batches-py/ok": b"1"}, {"cifar-10-batches-py/up": ("../../etc/passwd", tarfile.SYMTYPE)}, "symbolic"),
    ({"cifar-10-batches-py/ok": b"1"}, {"cifar-10-batches-py/abs": ("/etc/passwd", tarfile.SYMTYPE)}, "symbolic link"),
    ({"cifar-10-batches-py/ok": b"1"}, {"cifar-10-batches-py/hard": ("../outside", tarfile.LNKTYPE)}, "hard link"),
    ({"cifar-10-batches-py/ok": b"1"}, {"cifar-10-batches-py/alias": ("ok", tarfile.SYMTYPE)}, "symbolic link"),
    ({"cifar-10-batches-py/ok": b"1"}, {"cifar-10-batches-py/dev": ("", tarfile.CHRTYPE)}, "device"),
])
def test_tampered_tar_is_refused_and_nothing_left(server, tmp_path, monkeypatch, members, links, why):
    archive = _tar_gz(tmp_path / "cifar-10-python.tar.gz", members, links)
    name = _archive_dataset(monkeypatch, server, archive)
    root = tmp_path / "root"
    root.mkdir()
    with pytest.raises(UserError, match=why) as err:
        download.download(name, root, mirror=server.url)
    assert "\n" not in str(err.value) and "tampered" in str(err.value)
    assert _tree(root) == [] and not (tmp_path / "evil").exists()
    assert not Path("/tmp/innerloop-evil-abs").exists()


@pytest.mark.parametrize("member,why", [("../evil.txt", r"'\.\.' in path"), ("/abs-evil.txt", "absolute path"),
                                        ("C:/evil.txt", "absolute path")])
def test_tampered_zip_is_refused(tmp_path, member, why):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("good/ok.txt", "ok")
        zf.writestr(member, "evil")
    target = tmp_path / "out"
    target.mkdir()
    with pytest.raises(UserError, match=why):
        download.safe_extract(archive, target)
    assert _tree(target) == [] and not (tmp_path / "evil.txt").exists()


def test_zip_symlink_member_is_refused(tmp_path):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        info = zipfile.ZipInfo("link")
        info.external_attr = (0o120777 << 16)
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(UserError, match="symbolic link"):
        download.safe_extract(archive, tmp_path)


@pytest.mark.parametrize("kind", ["garbage", "truncated-tar", "truncated-zip"])
def test_corrupt_or_truncated_archive_with_matching_checksum(server, tmp_path, monkeypatch, kind):
    if kind == "garbage":
        data = np.random.default_rng(0).integers(0, 256, 5000, dtype=np.uint8).tobytes()
        archive = tmp_path / "cifar-10-python.tar.gz"
        archive.write_bytes(data)
    elif kind == "truncated-tar":
        payload = np.random.default_rng(1).integers(0, 256, 200_000, dtype=np.uint8).tobytes()
        full = _tar_gz(tmp_path / "full.tar.gz", {"cifar-10-batches-py/data_batch_1": payload})
        archive = tmp_path / "cifar-10-python.tar.gz"
        archive.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    else:
        omni = shared("omniglot")
        archive = tmp_path / "images_evaluation.zip"
        data = (omni / "images_evaluation.zip").read_bytes()
        archive.write_bytes(data[: len(data) // 2])
    name = _archive_dataset(monkeypatch, server, archive)  # the user-supplied checksum matches the bad file
    root = tmp_path / "root"
    with pytest.raises(UserError, match="corrupt or truncated") as err:
        download.download(name, root, mirror=server.url)
    assert "\n" not in str(err.value) and not root.exists()


def test_existing_target_is_kept_unless_forced(server, tmp_path, monkeypatch):
    (server.directory / "a.txt").write_text("new")
    name = _fake_dataset(monkeypatch, Resource("https://example.invalid/a.txt", "a.txt", _sha(server.directory / "a.txt")))
    root = tmp_path / "root"
    root.mkdir()
    (root / "a.txt").write_text("old")
    assert download.download(name, root, mirror=server.url) == []
    assert (root / "a.txt").read_text() == "old"
    download.download(name, root, mirror=server.url, force=True)
    assert (root / "a.txt").read_text() == "new" and _tree(root) == ["a.txt"]


def test_file_mirror_and_datasets_without_urls(tmp_path):
    mnist = shared("mnist")
    shas = {f.name: _sha(f) for f in mnist.iterdir() if f.suffix == ".gz"}
    placed = download.download("mnist", tmp_path / "m", sha256=shas, mirror=mnist.as_uri())
    assert len(placed) == 4
    for name in ("miniimagenet", "tieredimagenet"):
        with pytest.raises(UserError, match="no canonical public download") as err:
            download.download(name, tmp_path / name)
        assert str(tmp_path / name) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="unknown dataset"):
        download.download("imagenet", tmp_path)
    with pytest.raises(ConfigError, match="ambiguous"):
        download.download("mnist", tmp_path / "x", sha256="a" * 64)


def test_recorded_checksums_are_well_formed():
    for name, resources in download.DATASETS.items():
        assert resources, name
        for r in resources:
            assert r.sha256 is None or (len(r.sha256) == 64 and int(r.sha256, 16) >= 0), r
            assert r.url.startswith("https://") and r.source, r
