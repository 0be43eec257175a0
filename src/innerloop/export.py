"""Export a meta-learner's learned parts as plain files that need neither innerloop nor pickle to read.

    meta.export("exported/")   ->  exported/init.safetensors   the learned initialisation: a state_dict of the model
                                   exported/rule.safetensors   the rule's meta-parameters (ALFA's generator, the LSTM,
                                                               per-step rates), as rule.state_dict()
                                   exported/export.json        what is where: names, shapes, format, the run config

``.safetensors`` when the ``safetensors`` package is installed, else ``.pt`` written by ``torch.save`` (a dict of
tensors, loadable with ``torch.load(..., weights_only=True)``). A per-task random initialisation (LFT, L2O,
ALFA+Random) has no learned initialisation: only the rule is written. Load the initialisation into a fresh
instance of the model with :func:`load_state_dict_file` (or the library that wrote it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from innerloop.errors import ConfigError, UserError

if TYPE_CHECKING:
    from innerloop.engine.meta import MetaLearner


ORDER = "innerloop.keys"  # safetensors metadata: the tensors' names in the model's order


def _has_safetensors() -> bool:
    try:
        import safetensors.torch  # noqa: F401
    except ImportError:
        return False
    return True


def save_state_dict_file(tensors: dict[str, Tensor], path: Path) -> Path:
    """``path`` with suffix ``.safetensors`` (if installed) or ``.pt``; written atomically."""
    from innerloop import checkpoint as ckpt

    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    if _has_safetensors():
        from safetensors.torch import save

        target = path.with_suffix(".safetensors")
        data = save(tensors, metadata={ORDER: json.dumps(list(tensors))})  # safetensors itself sorts the names
        ckpt.atomic_write(target, lambda f: f.write(data))
        return target
    target = path.with_suffix(".pt")
    ckpt.atomic_write(target, lambda f: torch.save(tensors, f))
    return target


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """A state dict written by :func:`save_state_dict_file` (``.safetensors`` or ``.pt``, weights only)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no exported file at {path}: export with meta.export(FOLDER) first")
    if path.suffix == ".safetensors":
        if not _has_safetensors():
            raise UserError(f"{path} is a safetensors file: pip install safetensors to read it")
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            names = list(f.keys())
            order = json.loads((f.metadata() or {}).get(ORDER, "[]"))
            if sorted(order) == sorted(names):
                names = order  # the model's own order (named_parameters), as written
            return {k: f.get_tensor(k) for k in names}
    return torch.load(path, map_location="cpu", weights_only=True)


def export(meta: "MetaLearner", path: str | Path, family: str | None = None) -> dict[str, str]:
    """Write ``meta``'s learned initialisation (if it has one) and rule into folder ``path``; returns
    ``{"init": file, "rule": file, "manifest": file}`` (no ``"init"`` for a per-task random init)."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise UserError(f"{out} is a file: export writes a folder; choose another path")
    out.mkdir(parents=True, exist_ok=True)
    family = meta._family(family)
    model = meta.learners[family].model
    files: dict[str, str] = {}
    manifest: dict = {"format": "safetensors" if _has_safetensors() else "torch.save (weights only)",
                      "model": type(model).__module__ + "." + type(model).__qualname__}
    try:
        init = meta.initial_state_dict(family)
    except ConfigError:
        init = None
        manifest["init"] = "none: a fresh random initialisation is drawn per task"
    if init is not None:
        files["init"] = str(save_state_dict_file(init, out / "init"))
        manifest["init"] = {"file": Path(files["init"]).name, "keys": list(init),
                            "shapes": {k: list(v.shape) for k, v in init.items()}}
    rule = meta.rule.state_dict()
    if rule:
        files["rule"] = str(save_state_dict_file(rule, out / "rule"))
        manifest["rule"] = {"file": Path(files["rule"]).name, "class": type(meta.rule).__qualname__,
                            "keys": list(rule)}
    config = getattr(meta, "config", None)
    if config is not None:
        from innerloop.config import to_toml

        manifest["config"] = to_toml(config)
    from innerloop import checkpoint as ckpt

    target = out / "export.json"
    text = json.dumps(manifest, indent=1).encode()
    ckpt.atomic_write(target, lambda f: f.write(text))
    files["manifest"] = str(target)
    return files
