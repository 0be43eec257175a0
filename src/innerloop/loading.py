"""Load a trained run for use from Python, without its training data.

    import innerloop
    meta = innerloop.load("runs/omniglot-maml")                # config + checkpoint; no dataset is read
    adapted = meta.adapt(support_x, support_y)                 # one task's support set
    adapted.predict(query_x).argmax(-1)                        # class indices

The run directory holds everything needed to rebuild the model: ``config.toml`` and, in its checkpoint, the
input shape and number of ways the model was built for (older checkpoints: computed from the config's dataset,
see :func:`innerloop.build.model_spec`).
"""

from __future__ import annotations

from pathlib import Path

import torch

from innerloop import checkpoint as ckpt
from innerloop.build import DTYPES, build_meta, model_spec
from innerloop.engine.meta import MetaLearner
from innerloop.errors import UserError


def load(run_dir: str | Path, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None
         ) -> MetaLearner:
    """The trained meta-learner of ``run_dir`` (made by ``innerloop train`` or ``innerloop reproduce``), on
    ``device`` (default: the one it was trained on if available, else the CPU) in ``dtype`` (default: its training
    dtype). ``meta.config`` is the run's resolved config; ``meta.run_dir`` its folder; ``meta.spec`` the input shape
    and ways the model was built for. No dataset is read
    (a UAP run loads its victim classifiers, which are part of its model)."""
    from innerloop.train import _load_state, _read_config

    run = Path(run_dir)
    if not run.is_dir():
        raise UserError(f"no run directory at {run}: train first with 'innerloop train CONFIG --out {run}'")
    cfg = _read_config(run)
    state = _load_state(run / ckpt.CHECKPOINT, ("meta",))
    if device is not None:
        cfg.train.device = str(device)
    elif cfg.train.device.startswith("cuda") and not torch.cuda.is_available():
        cfg.train.device = "cpu"
    if dtype is not None:
        names = {v: k for k, v in DTYPES.items()}
        cfg.train.dtype = names.get(dtype, dtype) if not isinstance(dtype, str) else dtype
        if cfg.train.dtype not in DTYPES:
            raise UserError(f"dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    spec = state.get("spec") if isinstance(state.get("spec"), dict) else model_spec(cfg)
    if spec is None:
        raise UserError(f"{run} was trained on a folder dataset before runs stored their input shape: load it with "
                        "innerloop.train.load_run (it reads the data) or retrain")
    bad = ckpt.non_finite(state["meta"])
    if bad:
        raise UserError(f"checkpoint in {run} holds non-finite meta-parameters ({', '.join(bad[:3])}): retrain, or "
                        "--resume from an earlier copy")
    meta = build_meta(cfg, spec)
    try:
        meta.load_state_dict(state["meta"])
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError) as e:
        raise UserError(f"checkpoint in {run} does not match its config.toml ({str(e).splitlines()[0][:100]}); "
                        "retrain") from None
    meta.run_dir = run
    meta.spec = spec  # what the model was built for (evaluation loads its data at this input size)
    return meta
