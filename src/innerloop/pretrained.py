"""Fine-tuners shipped with the package, by name (``innerloop finetune --tuner default``, ``load_fine_tuner("default")``).

A shipped fine-tuner is three files in ``innerloop/weights/``: ``NAME.pt`` (the rule's meta-parameters, a
``torch.save``'d state dict loaded with ``weights_only=True``), and ``NAME.json`` (the SHA-256 of ``NAME.pt``, the
shipped config that trained it — ``innerloop train CONFIG`` reproduces the file — and how it was measured). The
config's ``[rule]`` section rebuilds the rule; the file is refused unless its checksum matches.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from innerloop.errors import UserError
from innerloop.rules import UpdateRule

WEIGHTS = Path(__file__).resolve().parent / "weights"


def available() -> list[str]:
    """Names of the shipped fine-tuners."""
    return sorted(p.stem for p in WEIGHTS.glob("*.json"))


def manifest(name: str) -> dict:
    path = WEIGHTS / f"{name}.json"
    if not path.is_file():
        names = ", ".join(available()) or "none"
        raise UserError(f"no shipped fine-tuner named {name!r} (shipped: {names}); or pass the run folder of one "
                        "you trained (innerloop train sinusoid/lft-stable --out DIR)")
    return json.loads(path.read_text())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_shipped(name: str) -> UpdateRule:
    """The shipped fine-tuner ``name``: its rule rebuilt from its config, its meta-parameters checked and loaded."""
    from innerloop import config as C
    from innerloop.build import build_rule

    info = manifest(name)
    weights = WEIGHTS / info["file"]
    if not weights.is_file():
        raise UserError(f"the shipped fine-tuner {name!r} lacks {weights}: reinstall innerloop")
    digest = sha256(weights)
    if digest != info["sha256"]:
        raise UserError(f"{weights} is corrupt (SHA-256 {digest[:12]}..., expected {info['sha256'][:12]}...): "
                        "reinstall innerloop")
    cfg = C.load(info["config"])
    rule = build_rule(cfg, None, None)
    rule.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return rule


def ship(run_dir: str | Path, name: str, config: str, notes: str = "", folder: Path | None = None) -> Path:
    """Write the trained rule of ``run_dir`` as the shipped fine-tuner ``name`` (``NAME.pt`` + ``NAME.json`` in
    ``folder``, default the package's): ``config`` is the shipped config that trained it, so
    ``innerloop train CONFIG --out DIR`` followed by ``ship(DIR, name, config)`` reproduces the file (bit for bit
    on the same machine and thread count: float sums may round differently elsewhere)."""
    from innerloop import checkpoint as ckpt
    from innerloop.loading import load

    folder = WEIGHTS if folder is None else Path(folder)
    meta = load(run_dir)
    state = {k: v.detach().cpu().contiguous() for k, v in meta.rule.state_dict().items()}
    weights = folder / f"{name}.pt"
    ckpt.atomic_write(weights, lambda f: torch.save(state, f))
    iterations = ckpt.load(Path(run_dir) / "checkpoint.pt")["iteration"]
    info = {"file": weights.name, "sha256": sha256(weights), "config": config, "iterations": int(iterations),
            "rule": type(meta.rule).__qualname__, "parameters": int(sum(v.numel() for v in state.values())),
            "reproduce": f"innerloop train {config} --out DIR && python -c \"from innerloop.pretrained import ship; "
                         f"ship('DIR', '{name}', '{config}')\"",
            "notes": notes}
    text = json.dumps(info, indent=1).encode()
    ckpt.atomic_write(folder / f"{name}.json", lambda f: f.write(text))
    return weights
