"""``innerloop configs``: what the shipped configs are, what each setting means, how long training takes.

    innerloop configs                        # one line per shipped config: name, expected time, description
    innerloop configs sinusoid/maml          # its resolved settings, each with what it means (valid TOML)
    innerloop configs sinusoid/maml --set inner.steps=1
    innerloop configs --keys                 # the reference of every key, as Markdown (the README's)

Descriptions are the first line (``# ...``) of each shipped TOML file (:func:`innerloop.config.description`); the
expected times come from ``configs/times.json``, measured by ``benchmarks/config_times.py`` (seconds per
iteration x the config's ``train.iterations``); what each key means from :data:`innerloop.config.KEY_DOCS`.
"""

from __future__ import annotations

import json
import re
import typing
from pathlib import Path
from typing import Any

from innerloop import config
from innerloop.errors import UserError

TIMES = config.CONFIG_DIR / "times.json"


def human_duration(seconds: float) -> str:
    """``~40 s``, ``~9 min``, ``~14 h``, ``~3 days``."""
    if seconds < 1:
        return "<1 s"
    if seconds < 60:
        return f"~{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"~{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"~{seconds / 3600:.0f} h"
    return f"~{seconds / 86400:.0f} days"


def load_times(path: Path = TIMES) -> dict[str, Any]:
    """The measured times file (``{"date", "machine", "note", "configs": {name: entry}}``); {} when absent."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) and isinstance(data.get("configs"), dict) else {}


def expected_time(entry: dict[str, Any] | None, iterations: int) -> str:
    """What a times entry says about training ``iterations`` iterations: ``~9 min``, ``needs miniimagenet``,
    ``no training`` (an untrained baseline) or ``not measured``."""
    if not entry:
        return "not measured"
    if entry.get("needs"):
        return f"needs {entry['needs']}"
    if iterations == 0:
        return "no training"
    spi = entry.get("seconds_per_iteration")
    if not isinstance(spi, (int, float)):
        return "not measured"
    return human_duration(spi * iterations)


def _iterations(path: Path) -> int:
    """``train.iterations`` of a config file (the default when it does not set it)."""
    value = config.read_toml(path).get("train", {}).get("iterations", config.TrainConfig.iterations)
    return value if isinstance(value, int) else config.TrainConfig.iterations


def listing(times: dict[str, Any] | None = None) -> list[str]:
    """One line per shipped config: name, expected training time on the measured machine, description."""
    entries = (load_times() if times is None else times).get("configs", {})
    rows = []
    for name in config.list_shipped():
        path = config.CONFIG_DIR / f"{name}.toml"
        rows.append((name, expected_time(entries.get(name), _iterations(path)), config.description(path)))
    w_name = max(len(r[0]) for r in rows)
    w_time = max(len(r[1]) for r in rows)
    return [f"{n:<{w_name}}  {t:<{w_time}}  {d}".rstrip() for n, t, d in rows]


def listing_note(times: dict[str, Any] | None = None) -> str:
    """Where the listing's times come from (one line, for stderr)."""
    times = load_times() if times is None else times
    measured = (f"measured {times.get('date', '?')} on {times.get('machine', 'an unknown machine')}"
                if times else "no times file")
    return (f"innerloop: times are training only, approximate ({measured}; benchmarks/config_times.py); "
            "'innerloop configs NAME' shows a config's settings, 'innerloop configs --keys' every key")


# ------------------------------------------------------------------------------------------------ key reference

_TYPE_NAMES = {bool: "true or false", int: "integer", float: "number", str: "string"}


def type_name(tp: Any) -> str:
    """A field type in words: ``integer``, ``list of numbers``, ``integer, or unset``."""
    origin = typing.get_origin(tp)
    if origin is list:
        (inner,) = typing.get_args(tp)
        return "list of " + {int: "integers", float: "numbers", str: "strings"}.get(inner, str(inner))
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if args and len(args) < len(typing.get_args(tp)):
        return " or ".join(type_name(a) for a in args) + ", or unset"
    return _TYPE_NAMES.get(tp, getattr(tp, "__name__", str(tp)))


def _hints() -> dict[str, Any]:
    """``section.key`` -> field type."""
    out = {}
    for section, tp in typing.get_type_hints(config.Config).items():
        for key, sub in typing.get_type_hints(tp).items():
            out[f"{section}.{key}"] = sub
    return out


def allowed(key: str, quote: str = "") -> str:
    """The values ``key`` may take, in words: its choices (each between ``quote``), else its type and range."""
    if key in config.CHOICES:
        return "one of " + ", ".join(f"{quote}{v}{quote}" for v in config.CHOICES[key])
    text = type_name(_hints()[key])
    if key in config.BOUNDS:
        low, high = config.BOUNDS[key]
        text += f" >= {low:g}" if high is None else f" <= {high:g}" if low is None else f" in [{low:g}, {high:g}]"
    return text


def used_by(key: str) -> str:
    """``"episodes"`` / ``"incongruous, uap"`` for a key only some task families use, else ""."""
    return ", ".join(config.APPLIES_TO.get(key, ()))


def _section_doc(section: str) -> str:
    tp = typing.get_type_hints(config.Config)[section]
    return re.sub(r"^``\[\w+\]``: ", "", (tp.__doc__ or "").strip())


def show(name: str, sets: list[str] | None = None) -> str:
    """Config ``name`` resolved (defaults <- file <- ``--set``) as TOML: every key by section, each with what it
    means and its allowed values; loading the output gives the same config."""
    cfg = config.load(name, sets)
    path = config.resolve_path(name)
    shipped = name if name in config.list_shipped() else None
    head = [f"# {name}: {config.description(path) or '(no description)'}", f"# file: {path}"]
    if shipped:
        entry = load_times().get("configs", {}).get(shipped)
        when = expected_time(entry, cfg.train.iterations)
        head.append(f"# expected training time: {when} ({cfg.train.iterations} iterations; approximate, see "
                    "'innerloop configs')")
    if sets:
        head.append(f"# with --set {' --set '.join(sets)}")
    head.append(f"# every key, resolved; '(unused here: ...)' marks the keys task.family = \"{cfg.task.family}\" ignores")
    lines = head
    width = 34
    for section, values in cfg.to_dict().items():
        lines += ["", f"[{section}]  # {_section_doc(section)}"]
        for key, value in values.items():
            full = f"{section}.{key}"
            setting = f"{key} = {config.toml_value(value)}" if value is not None else f"# {key} = (unset)"
            families = used_by(full)
            unused = (f"(unused here: {families} only) " if families and cfg.task.family not in config.APPLIES_TO[full]
                      else "")
            lines.append(f"{setting:<{width}} # {unused}{config.KEY_DOCS[full]} [{allowed(full)}]")
    return "\n".join(lines)


def _md(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    text = text.replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("*", "\\*")
    return re.sub(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])", r"\\_", text)


def key_reference_markdown(level: int = 3) -> str:
    """The reference of every config key as Markdown: per section a heading (``level``) and a table of key,
    default, allowed values and meaning. What the README's key reference is generated from."""
    default = config.Config().to_dict()
    out = []
    for section, values in default.items():
        intro = _section_doc(section)
        out += [f"{'#' * level} `[{section}]`", "", _md(intro[:1].upper() + intro[1:]), "",
                "| key | default | allowed | meaning |", "|---|---|---|---|"]
        for key, value in values.items():
            full = f"{section}.{key}"
            shown = "unset" if value is None else f"`{config.toml_value(value)}`"
            families = used_by(full)
            doc = (f"*{families} only:* " if families else "") + _md(config.KEY_DOCS[full])
            out.append(f"| `{key}` | {shown.replace('|', chr(92) + '|')} | {allowed(full, quote='`')} | {doc} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def run(name: str | None, sets: list[str], keys: bool) -> tuple[str, str | None]:
    """The ``configs`` command: (stdout text, optional stderr note)."""
    if keys and name:
        raise UserError("innerloop configs takes NAME (one config's settings) or --keys (every key), not both")
    if sets and not name:
        raise UserError("--set needs a config to apply to: innerloop configs NAME --set KEY=VALUE")
    if keys:
        return key_reference_markdown().rstrip("\n"), None
    if name:
        return show(name, sets), None
    times = load_times()
    return "\n".join(listing(times)), listing_note(times)
