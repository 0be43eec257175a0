"""Verified downloads: fetch, check SHA-256, extract safely, and move into place only on success.

``download(name, root)`` fetches every file of a dataset that has a canonical public URL
(:data:`DATASETS`: ``omniglot``, ``mnist``, ``cifar10``, ``cub``) with :mod:`urllib`:

1. each file streams into a staging folder inside ``root`` (``.innerloop-download-*``) while its
   SHA-256 is computed; a short read, an HTTP error or a checksum mismatch is a one-line
   :class:`~innerloop.errors.UserError`;
2. archives are checked member by member *before* anything is extracted: only plain files and
   folders with relative names pass -- absolute paths, ``..`` components, symbolic and hard links
   (even ones that seem to stay inside: a chain of ``..`` links escapes), device/FIFO members, and
   zip entries with symlink mode bits are refused with a one-line "unsafe archive" error. This
   check alone is sufficient (tarfile's ``"data"`` filter, which Python < 3.10.12 / 3.11.4 lacks,
   is consulted as a second opinion only where present): innerloop writes the members itself,
   plain files and folders only, into a fresh folder next to the target that is renamed into place
   on success and removed on any failure; a corrupt or truncated archive is a one-line error;
3. only when every file of the dataset is verified (and extracted) are the results renamed into
   ``root``; the staging folder is removed in all cases, so a failure leaves nothing behind (and
   ``root`` itself is removed again if the download created it and it stayed empty).

Checksums: each :class:`Resource` records the SHA-256 published for it and where it was
confirmed (``Resource.source``). A file whose SHA-256 could not be confirmed has ``sha256=None``
and is only downloaded when the caller passes one (``sha256=`` / CLI ``--sha256``); a value
passed by the caller also overrides a recorded one (e.g. for a mirror with repacked files).
miniImageNet and tieredImageNet have no canonical URL: asking for them says where to put the files.
"""

from __future__ import annotations

import hashlib
import http.client
import lzma
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from innerloop.data.messages import brief
from innerloop.errors import ConfigError, UserError


@dataclass(frozen=True)
class Resource:
    """One file of a dataset: where it comes from, its checksum, and where it goes under ``root``."""

    url: str
    filename: str  #: saved as ``root/subdir/filename`` (unless extracted)
    sha256: str | None  #: ``None``: no confirmed checksum; the user must pass one
    size: int | None = None  #: bytes, informational
    subdir: str = ""  #: folder under ``root`` for the file (and under a mirror URL)
    extract: bool = False  #: a zip/tar archive, extracted into ``root`` and not kept
    provides: str = ""  #: path under ``root`` whose presence means "already downloaded"
    source: str = ""  #: where the checksum was confirmed

    @property
    def target(self) -> str:
        """Path under ``root`` that marks this resource as present."""
        return self.provides or str(PurePosixPath(self.subdir, self.filename))


_TFDS = "tensorflow/datasets tensorflow_datasets/url_checksums/{}.txt"
_PROTONETS = "https://raw.githubusercontent.com/jakesnell/prototypical-networks/c9bb4d258267c11cb6e23f0a19242d24ca98ad8a"
_TORCHMETA = "https://raw.githubusercontent.com/tristandeleu/pytorch-meta/82954ea747a8fc6f6f4dd084f570f2b6ae0ebb77"
_SPLIT_SOURCE = ("SHA-256 of the byte-identical copy in the project's shared data (SHA256SUMS); size and "
                 "content cross-checked against the stored GitHub file")

#: Every dataset with a canonical public URL, file by file.
DATASETS: dict[str, list[Resource]] = {
    "omniglot": [
        Resource("https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_background.zip",
                 "images_background.zip",
                 "ad41ab679c8b5d90b271ef46be6987cc81211774a695c29dcc5367b2b26ee640", 9_464_212,
                 source=_TFDS.format("omniglot")),
        Resource("https://raw.githubusercontent.com/brendenlake/omniglot/master/python/images_evaluation.zip",
                 "images_evaluation.zip",
                 "1f61a8f3366785b057fc117d9228e78a16e3d976c8953b2a10fcc74cf0609cee", 6_462_886,
                 source=_TFDS.format("omniglot")),
        *[Resource(f"{_PROTONETS}/data/omniglot/splits/vinyals/{split}.txt", f"{split}.txt", sha, size,
                   subdir="splits/vinyals", source=_SPLIT_SOURCE)
          for split, sha, size in [
              ("train", "984522c194c30fb678ce53304a160a42faf5403ad4f9a67010f32dd3a35738e0", 133_244),
              ("val", "11f99e54faee3e26f53d3231c1cceac5bf7b8730e9be31cb6dab256551dc0c1a", 21_312),
              ("trainval", "5276ae50c755596d0bff7f2284e85625695549a85ee6e36b6491ad1e5d1cc26a", 154_556),
              ("test", "845264cc5c156180828ccf17915668b17ee21424d0170df6e7d81676aa5d1204", 50_372)]],
    ],
    "mnist": [
        Resource(f"https://ossci-datasets.s3.amazonaws.com/mnist/{name}", name, sha, size, source=_TFDS.format("mnist"))
        for name, sha, size in [
            ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9_912_422),
            ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28_881),
            ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1_648_877),
            ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4_542)]
    ],
    "cifar10": [
        Resource("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                 "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce", 170_498_071,
                 extract=True, provides="cifar-10-batches-py",
                 source="keras-team/keras keras/src/datasets/cifar10.py (get_file file_hash)"),
    ],
    "cub": [
        Resource("https://data.caltech.edu/records/65de6-vp158/files/CUB_200_2011.tgz?download=1", "CUB_200_2011.tgz",
                 "0c685df5597a8b24909f6a7c9db6d11e008733779a671760afef78feb49bf081", 1_150_585_339,
                 extract=True, provides="CUB_200_2011/images",
                 source=_TFDS.format("caltech_birds2011") + "; pytorch/vision prototype cub200 (HttpResource sha256)"),
        *[Resource(f"{_TORCHMETA}/torchmeta/datasets/assets/cub/{split}.json", f"{split}.json", sha, size,
                   subdir="splits/torchmeta", source=_SPLIT_SOURCE)
          for split, sha, size in [
              ("train", "ec90b228abb6100266ec7efd5513ec62d42c2507ccb366f25c42debfd2b5da2e", 2_251),
              ("val", "fff92a7293e7e529185a3d2be7d6ec3956fafe916996668384d7bc5d798b8903", 1_110),
              ("test", "41c79218a7bd4c2f805623e52e4fa9653e28e063638e8121efcd81183cf7ecc5", 1_174)]],
    ],
}

#: Datasets without a canonical URL, and where their files go.
NO_URL = {
    "miniimagenet": "miniImageNet has no canonical public download: get it from its authors' instructions, then put "
                    "the images in {root}/images/ and the Ravi split csv files in {root}/splits/ravi/ (or "
                    "mini-imagenet-cache-{{train,val,test}}.pkl in {root})",
    "tieredimagenet": "tieredImageNet has no canonical public download: put {{train,val,test}}_images_png.pkl and "
                      "{{train,val,test}}_labels.pkl (from the authors' tiered-imagenet.tar) in {root}",
    "folder": "'folder' reads your own images: put them in {root}/<class>/<image>; there is nothing to download",
}

_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_STAGING = ".innerloop-download-"
_CHUNK = 1 << 20


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _checked_hex(value: str, what: str) -> str:
    if not _HEX.match(value):
        raise ConfigError(f"{what}: {value!r} is not a SHA-256 (64 hex digits)")
    return value.lower()


def expected_sha256(resources: list[Resource], given: str | Mapping[str, str] | None) -> dict[str, str]:
    """``{filename: sha256}`` for ``resources``: the caller's values over the recorded ones.

    ``given`` is one hex string (for a dataset with one file, or whose single unconfirmed file it
    is meant for) or ``{filename: hex}``. UserError names any file still without a checksum.
    """
    names = [r.filename for r in resources]
    overrides: dict[str, str] = {}
    if isinstance(given, str):
        unknown = [r.filename for r in resources if r.sha256 is None]
        targets = names if len(names) == 1 else unknown
        if len(targets) != 1:
            raise ConfigError(f"one --sha256 value is ambiguous for {len(names)} files: pass FILE=HEX for each of "
                              f"{', '.join(unknown or names)}")
        overrides[targets[0]] = _checked_hex(given, targets[0])
    elif given:
        for name, value in given.items():
            if name not in names:
                raise ConfigError(f"--sha256 names {name!r}, which is not one of this dataset's files: {', '.join(names)}")
            overrides[name] = _checked_hex(value, name)
    out = {}
    for r in resources:
        sha = overrides.get(r.filename, r.sha256)
        if sha is None:
            raise UserError(f"no confirmed SHA-256 is recorded for {r.filename} ({r.url}): obtain it from a source "
                            f"you trust and pass it with sha256= (CLI: --sha256 {r.filename}=HEX)")
        out[r.filename] = sha
    return out


def download_file(url: str, dest: str | Path, sha256: str, *, timeout: float = 60.0,
                  log: Callable[[str], None] | None = None) -> Path:
    """Stream ``url`` to ``dest`` through a temporary file, verify its SHA-256, then rename it into place.

    On any failure the temporary file is removed and ``dest`` is untouched.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".innerloop-part-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        received = 0
        request = urllib.request.Request(url, headers={"User-Agent": "innerloop-data/1"})
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            if log:
                log(f"downloading {url} ({int(length) / 1e6:.1f} MB)" if length else f"downloading {url}")
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                h.update(chunk)
                received += len(chunk)
        if length is not None and received != int(length):
            raise UserError(f"download of {url} is truncated: got {received} of {length} bytes; try again")
        actual = h.hexdigest()
        if actual != sha256.lower():
            raise UserError(f"checksum mismatch for {url}: SHA-256 {actual}, expected {sha256}; the file was discarded "
                            "(corrupt or tampered download, or a different file: try again or check the URL)")
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
        reason = getattr(e, "reason", None)  # URLError wraps the socket error
        detail = brief(reason) if isinstance(reason, BaseException) else brief(e)
        raise UserError(f"download of {url} failed ({detail}); check the network and try again") from None
    finally:
        tmp.unlink(missing_ok=True)


def _member_problem(name: str) -> str | None:
    """Why an archive member name is unsafe, or ``None``."""
    if not name or "\0" in name:
        return "empty or NUL in name"
    parts = PurePosixPath(name.replace("\\", "/")).parts
    if name.startswith(("/", "\\")) or (parts and re.match(r"^[A-Za-z]:", parts[0])):
        return "absolute path"
    if ".." in parts:
        return "'..' in path"
    return None


def _tar_member_problem(m: tarfile.TarInfo) -> str | None:
    """Why a tar member is unsafe, or ``None``: only plain files and folders with relative names pass.

    Links are refused whatever they point to: ``a/b -> ..`` then ``a/b/c -> ..`` each look local,
    yet together they lead out of the target folder.
    """
    problem = _member_problem(m.name)
    if problem is None and m.issym():
        problem = f"symbolic link to {m.linkname!r}"
    elif problem is None and m.islnk():
        problem = f"hard link to {m.linkname!r}"
    elif problem is None and not (m.isreg() or m.isdir()):
        problem = "device, FIFO or other special member"
    elif problem is None and m.isreg() and not _parts(m.name):
        problem = "file without a name"
    return problem


def _zip_member_problem(info: zipfile.ZipInfo) -> str | None:
    """Why a zip entry is unsafe (bad name, or symlink/device mode bits), or ``None``."""
    problem = _member_problem(info.filename)
    mode = info.external_attr >> 16
    if problem is None and stat.S_ISLNK(mode):
        problem = "symbolic link"
    elif problem is None and mode and stat.S_IFMT(mode) and not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        problem = "device, FIFO or other special member"
    return problem


def _unsafe(archive: Path, member: str, problem: str) -> UserError:
    return UserError(f"unsafe archive {archive.name}: member {member!r} is refused ({problem}; the archive may be "
                     "tampered with) and nothing was extracted: delete the file and download it again from its "
                     "canonical source (without --mirror)")


def _check_tar(tar: tarfile.TarFile, archive: Path) -> list[tarfile.TarInfo]:
    """Every member of ``tar`` after checking it; UserError for the first unsafe one.

    innerloop's own check decides; tarfile's ``data`` filter, where Python has it, is only asked
    for a second opinion (a member it refuses is refused too).
    """
    members = tar.getmembers()
    second_opinion = getattr(tarfile, "data_filter", None)
    for m in members:
        problem = _tar_member_problem(m)
        if problem is None and second_opinion is not None:
            try:
                second_opinion(m, "/innerloop-extract-check")
            except tarfile.TarError as e:
                problem = f"refused by tarfile's data filter: {brief(e)}"
        if problem:
            raise _unsafe(archive, m.name, problem)
    return members


def _check_zip(zf: zipfile.ZipFile, archive: Path) -> None:
    for info in zf.infolist():
        problem = _zip_member_problem(info)
        if problem:
            raise _unsafe(archive, info.filename, problem)


def _parts(name: str) -> tuple[str, ...]:
    """The path components of a checked member name (no ``.``, no empty parts)."""
    return tuple(p for p in PurePosixPath(name.replace("\\", "/")).parts if p != ".")


def _write_tar(tar: tarfile.TarFile, members: list[tarfile.TarInfo], work: Path) -> None:
    """Write checked members (plain files and folders only) under ``work``; never creates or follows a link.

    Files get mode 0644 (0755 when the owner may execute) and the member's modification time;
    ownership, setuid bits and the like are dropped, as tarfile's ``data`` filter does.
    """
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    for m in members:
        dest = work.joinpath(*_parts(m.name))
        if m.isdir():
            dest.mkdir(parents=True, exist_ok=True)
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        source = tar.extractfile(m)
        if source is None:  # pragma: no cover - plain files always have data
            raise tarfile.ReadError(f"no data for {m.name!r}")
        mode = 0o755 if m.mode & 0o100 else 0o644
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | nofollow, mode)
        with source, os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(source, out, _CHUNK)
        os.utime(dest, (m.mtime, m.mtime))


def _extract_into(archive: Path, work: Path) -> None:
    """Check every member of ``archive``, then extract it into the empty folder ``work``."""
    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            _check_zip(zf, archive)
            zf.extractall(work)  # zipfile creates plain files and folders only
    else:
        with tarfile.open(archive) as tar:
            _write_tar(tar, _check_tar(tar, archive), work)


def _move_entries(work: Path, target: Path) -> list[Path]:
    """Rename every top-level entry of ``work`` into ``target`` (all or nothing); returns them."""
    entries = sorted(work.iterdir())
    target.mkdir(exist_ok=True)
    clash = next((target / e.name for e in entries if os.path.lexists(target / e.name)), None)
    if clash is not None:
        raise UserError(f"{clash} already exists: remove it and extract again")
    moved: list[Path] = []
    try:
        for entry in entries:
            os.rename(entry, target / entry.name)
            moved.append(target / entry.name)
    except OSError:
        for done in moved:
            os.rename(done, work / done.name)
        raise
    return moved


#: Everything a hostile or damaged archive can make zipfile/tarfile raise while reading it.
_ARCHIVE_ERRORS = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError, ValueError,
                   UnicodeError, struct.error, RuntimeError, NotImplementedError, MemoryError, OverflowError)


def safe_extract(archive: str | Path, target: str | Path) -> list[Path]:
    """Extract a zip or tar(.gz/.bz2/.xz) archive into the folder ``target``, safely; returns the entries placed.

    Every member is checked before anything is written (see the module docstring). The members
    are written to a fresh folder next to ``target`` and only renamed into ``target`` (created then
    if needed; its parent must exist) once all of them are out; a UserError for an unsafe, corrupt
    or truncated archive leaves ``target`` as it was and nothing else behind.
    """
    archive, target = Path(archive), Path(target)
    if not target.parent.is_dir():
        raise UserError(f"cannot extract {archive.name} into {target}: folder {target.parent} does not exist")
    work = Path(tempfile.mkdtemp(prefix=".innerloop-extract-", dir=target.parent))
    try:
        _extract_into(archive, work)
        return _move_entries(work, target)
    except UserError:
        raise
    except _ARCHIVE_ERRORS as e:
        raise UserError(f"archive {archive.name} is corrupt or truncated ({brief(e)}); "
                        "nothing was kept: download it again") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def resources(name: str) -> list[Resource]:
    """The files of dataset ``name``; UserError (where to put the files) for a dataset with no URL."""
    if name in DATASETS:
        return DATASETS[name]
    if name in NO_URL:
        raise UserError(NO_URL[name].format(root="ROOT"))
    from innerloop.data import READERS

    raise ConfigError(f"unknown dataset {name!r}: use one of {', '.join(READERS)}")


def download(
    name: str,
    root: str | Path,
    *,
    sha256: str | Mapping[str, str] | None = None,
    mirror: str | None = None,
    force: bool = False,
    timeout: float = 60.0,
    log: Callable[[str], None] | None = None,
) -> list[Path]:
    """Download dataset ``name`` into ``root``; returns the paths placed (empty if all were present).

    ``mirror``: a base URL (``http(s)://`` or ``file://``) laid out like ``root`` -- each file is
    fetched from ``mirror/<subdir>/<filename>`` instead of its canonical URL. ``force`` replaces
    files already present. See the module docstring for the guarantees.
    """
    if name in NO_URL:
        raise UserError(NO_URL[name].format(root=root))
    wanted = resources(name)
    expected = expected_sha256(wanted, sha256)
    root = Path(root).expanduser()
    todo = [r for r in wanted if force or not (root / r.target).exists()]
    if not todo:
        if log:
            log(f"{name}: already present in {root}")
        return []
    created_root = not root.exists()
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=_STAGING, dir=root))
    try:
        ready: list[tuple[Path, Path]] = []  # (staged path, final path)
        for i, r in enumerate(todo):
            url = r.url if mirror is None else "/".join(p.strip("/") for p in (mirror, r.subdir, r.filename) if p)
            staged = download_file(url, staging / f"{i}" / r.filename, expected[r.filename], timeout=timeout, log=log)
            if r.extract:
                out = staging / f"{i}-extracted"
                out.mkdir()
                entries = safe_extract(staged, out)
                staged.unlink()
                ready += [(e, root / e.name) for e in entries]
            else:
                ready.append((staged, root / r.subdir / r.filename))
        return _commit(ready, staging, force)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if created_root and root.is_dir() and not any(root.iterdir()):
            root.rmdir()


def _commit(ready: list[tuple[Path, Path]], staging: Path, force: bool) -> list[Path]:
    """Rename every staged entry into place (all or nothing); existing ones are replaced only with ``force``."""
    clashes = [final for _, final in ready if final.exists() or final.is_symlink()]
    if clashes and not force:
        raise UserError(f"{clashes[0]} already exists: remove it (or pass force) and download again")
    trash = staging / "replaced"
    trash.mkdir()
    done: list[tuple[Path, Path]] = []
    moved_aside: list[tuple[Path, Path]] = []
    try:
        for k, (staged, final) in enumerate(ready):
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists() or final.is_symlink():
                aside = trash / str(k)
                os.rename(final, aside)
                moved_aside.append((aside, final))
            os.rename(staged, final)
            done.append((staged, final))
    except OSError as e:
        for staged, final in reversed(done):
            os.rename(final, staged)
        for aside, final in moved_aside:
            os.rename(aside, final)
        raise UserError(f"could not move the downloaded files into place ({brief(e)}); nothing was changed") from None
    return [final for _, final in ready]


def print_log(message: str) -> None:
    """Default progress output: one line on stdout (stderr carries only the one-line error of a failure)."""
    print(message, flush=True)
