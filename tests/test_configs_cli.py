"""Discoverable settings: ``innerloop configs`` (listing, NAME, --keys), key docs, "did you mean", --version,
defaults in every --help, and keys that the task family does not use."""

import argparse
import dataclasses
import re
import sys
from importlib.metadata import version

import pytest

import innerloop
from innerloop import config, configs_cli
from innerloop.cli import _parser, main
from innerloop.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TIME = re.compile(r"^(~\d+ (s|min|h|days)|<1 s|no training|needs \S.*)$")


def dataclass_keys() -> set[str]:
    """Every ``section.key`` of the dataclasses, found independently of :func:`config.all_keys`."""
    return {f"{s.name}.{f.name}" for s in dataclasses.fields(config.Config) for f in dataclasses.fields(s.type
            if isinstance(s.type, type) else getattr(config, s.type))}


# ------------------------------------------------------------------------------------------- the one source of docs

def test_key_docs_cover_every_dataclass_field_and_nothing_else():
    keys = dataclass_keys()
    assert len(keys) > 80
    assert set(config.KEY_DOCS) == keys
    assert set(config.all_keys()) == keys
    for key, doc in config.KEY_DOCS.items():
        assert doc.strip() and "\n" not in doc and len(doc) < 200, key


def test_choices_bounds_and_families_name_real_keys_and_values():
    keys = dataclass_keys()
    assert set(config.CHOICES) <= keys and set(config.BOUNDS) <= keys and set(config.APPLIES_TO) <= keys
    default = config.Config()
    for key, allowed in config.CHOICES.items():
        section, name = key.split(".")
        assert getattr(getattr(default, section), name) in allowed, key
    for key, families in config.APPLIES_TO.items():
        assert key.startswith("task.") and set(families) <= set(config.CHOICES["task.family"]), key


def test_every_section_has_its_own_docstring():
    for section in dataclasses.fields(config.Config):
        cls = getattr(config, section.type) if isinstance(section.type, str) else section.type
        assert cls.__doc__.startswith(f"``[{section.name}]``: "), section.name


def test_dataset_doc_names_every_reader():
    from innerloop.data import READERS

    for name in READERS:
        assert name in config.KEY_DOCS["task.dataset"]


def test_new_choices_are_validated_before_training():
    for text, match in [("rule.inputs=\"both_\"", "rule.inputs"), ("rule.generator_layers=4", "rule.generator_layers"),
                        ("rule.alpha_granularity=\"steps\"", "rule.alpha_granularity")]:
        with pytest.raises(ConfigError, match=match):
            config.load("sinusoid/alfa-maml", [text])


# ---------------------------------------------------------------------------------------------- the listing

def test_listing_has_a_description_and_a_time_for_every_shipped_config(capsys):
    assert main(["configs"]) == 0
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    names = config.list_shipped()
    assert len(lines) == len(names) > 70
    for line, name in zip(lines, names):
        parts = re.split(r"\s{2,}", line.strip())
        assert parts[0] == name and len(parts) == 3, line
        assert TIME.match(parts[1]), line  # a measured time or what is missing ("not measured" fails)
        assert parts[2] and parts[2] == config.description(config.CONFIG_DIR / f"{name}.toml")
    assert "approximate" in err and "measured" in err


def test_every_shipped_config_starts_with_a_one_line_description():
    for name in config.list_shipped():
        path = config.CONFIG_DIR / f"{name}.toml"
        first = path.read_text().splitlines()[0]
        assert first.startswith("# ") and 20 < len(first) <= 120, name
        assert config.description(path) == first[2:].strip()


def test_times_file_is_consistent():
    times = configs_cli.load_times()
    assert "approximate" in times["note"].lower() and times["date"] and "cores" in times["machine"]
    assert set(times["configs"]) == set(config.list_shipped())
    for name, entry in times["configs"].items():
        assert entry["iterations"] == config.load(name).train.iterations, name
        if "needs" in entry or entry["iterations"] == 0:
            continue
        fastest = min(t["seconds_per_iteration"] for t in entry["by_threads"].values())
        assert entry["seconds_per_iteration"] == fastest > 0, name  # the faster thread count is the estimate
        assert entry["total_s"] == pytest.approx(fastest * entry["iterations"], rel=1e-3, abs=1), name


@pytest.mark.parametrize("seconds, text", [(0.4, "<1 s"), (30, "~30 s"), (540, "~9 min"), (14 * 3600, "~14 h"),
                                           (3 * 86400, "~3 days"), (89 * 60, "~89 min"), (2 * 3600, "~2 h")])
def test_human_duration(seconds, text):
    assert configs_cli.human_duration(seconds) == text


def test_expected_time_scales_to_the_current_iterations():
    entry = {"seconds_per_iteration": 2.0, "iterations": 10, "total_s": 20}
    assert configs_cli.expected_time(entry, 270) == "~9 min"  # 540 s: the config's iterations, not the entry's
    assert configs_cli.expected_time(entry, 0) == "no training"
    assert configs_cli.expected_time({"needs": "cub", "iterations": 5}, 5) == "needs cub"
    assert configs_cli.expected_time(None, 5) == "not measured"


# ------------------------------------------------------------------------------------------------- configs NAME

@pytest.mark.parametrize("name", ["sinusoid/maml", "omniglot/alfa-random", "lft/uap"])
def test_configs_name_shows_every_key_with_its_doc_and_is_a_valid_config(tmp_path, name):
    out = configs_cli.show(name)
    cfg = config.load(name)
    parsed = tomllib.loads(out)
    lines: dict[str, str] = {}  # section.key -> its line
    section = None
    for line in out.splitlines():
        head = re.match(r"^\[(\w+)\]", line)
        key = re.match(r"^(?:# )?(\w+) = ", line)
        if head:
            section = head.group(1)
        elif key and section:
            lines[f"{section}.{key.group(1)}"] = line
    assert set(lines) == dataclass_keys()
    for section, values in cfg.to_dict().items():
        for key, value in values.items():
            full = f"{section}.{key}"
            line = lines[full]
            assert config.KEY_DOCS[full] in line and configs_cli.allowed(full) in line, full
            if value is None:
                assert key not in parsed[section] and line.startswith(f"# {key} = (unset)")
            else:
                assert parsed[section][key] == value, full
    again = tmp_path / "again.toml"
    again.write_text(out)
    assert config.load(str(again)) == cfg
    assert config.description(config.resolve_path(name)) in out.splitlines()[0]


def test_configs_name_marks_the_keys_its_family_ignores():
    out = configs_cli.show("omniglot/maml")
    ways = next(line for line in out.splitlines() if line.startswith("ways = "))
    amplitude = next(line for line in out.splitlines() if line.startswith("amplitude = "))
    assert "unused here" not in ways and "(unused here: sinusoid, incongruous only)" in amplitude


def test_configs_name_with_set_and_through_the_cli(capsys):
    assert main(["configs", "sinusoid/maml", "--set", "inner.steps=3"]) == 0
    out = capsys.readouterr().out
    assert tomllib.loads(out)["inner"]["steps"] == 3 and "# with --set inner.steps=3" in out


def test_configs_argument_mistakes_are_one_line(capsys):
    assert main(["configs", "--keys", "sinusoid/maml"]) == 2
    assert main(["configs", "--set", "inner.steps=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(line.startswith("innerloop: error:") for line in err)


# ------------------------------------------------------------------------------------------------- --keys

def _cells(row: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", row)[1:-1]]


def test_key_reference_markdown_has_a_table_row_for_every_key(capsys):
    md = configs_cli.key_reference_markdown()
    assert main(["configs", "--keys"]) == 0
    assert capsys.readouterr().out == md
    seen = set()
    section = None
    for line in md.splitlines():
        head = re.match(r"^### `\[(\w+)\]`$", line)
        if head:
            section = head.group(1)
        elif line.startswith("| `"):
            cells = _cells(line)
            assert len(cells) == 4, line  # key, default, allowed, meaning: pipes in the text are escaped
            seen.add(f"{section}.{cells[0].strip('`')}")
    assert seen == dataclass_keys()
    assert "\\|\\|delta\\|\\|" in md and "&lt;dataset&gt;" in md  # ||delta|| and <dataset> survive rendering
    assert "*episodes only:*" in md and "one of `sinusoid`, `episodes`" in md
    assert configs_cli.key_reference_markdown(level=2).startswith("## `[task]`")


# ----------------------------------------------------------------------------------------------- did you mean

def test_misspelt_config_name_suggests_the_closest_in_one_short_line():
    with pytest.raises(ConfigError) as e:
        config.load("sinusoid/alfa-mam")
    msg = str(e.value)
    assert msg == ("unknown config 'sinusoid/alfa-mam': no config file or shipped config by that name; did you mean "
                   "'sinusoid/alfa-maml'? ('innerloop configs' lists all)")
    with pytest.raises(ConfigError, match="did you mean 'omniglot/alfa-maml' or 'sinusoid/alfa-maml'"):
        config.load("alfa-maml")  # a bare name: that name in every folder
    with pytest.raises(ConfigError) as e:
        config.load("nope/none")
    assert "did you mean" not in str(e.value) and len(str(e.value)) < 150  # no dump of every name
    with pytest.raises(ConfigError, match="'sinusoid' is a folder of shipped configs: name one of 'sinusoid/alfa-maml'"):
        config.load("sinusoid")


def test_misspelt_config_name_on_the_command_line(capsys, tmp_path):
    assert main(["train", "sinusoid/alfa-mam", "--out", str(tmp_path / "run")]) == 2
    assert main(["configs", "omniglot/mam"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith("innerloop: error: unknown config 'sinusoid/alfa-mam'") and len(err) == 2
    assert "did you mean 'omniglot/maml'?" in err[1] and len(err[1]) < 200


@pytest.mark.parametrize("text, match", [
    ("train.iteratons=3", "unknown key 'train.iteratons' in --set; did you mean 'train.iterations'?"),
    ("train.steps=3", "did you mean 'inner.steps' or 'eval.steps'?"),
    ("trian.iterations=3", r"unknown section \[trian\] in --set; did you mean 'train.iterations'?"),
    ("trian.bogus=3", r"unknown section \[trian\] in --set; did you mean \[train\]?"),
    ("train.bogus=3", "unknown key 'train.bogus' in --set; valid keys: iterations, "),  # nothing close: the list
])
def test_unknown_key_or_section_suggests_the_closest(text, match):
    with pytest.raises(ConfigError, match=match):
        config.load("sinusoid/maml", [text])


def test_unknown_key_in_a_file_suggests_too(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[inner]\nstep = 2\n")
    with pytest.raises(ConfigError, match=f"unknown key 'inner.step' in {re.escape(str(path))}; did you mean "
                                          "'inner.steps'"):
        config.load(str(path))


# ------------------------------------------------------------------------------------------ --version and --help

def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0
    assert capsys.readouterr().out.strip() == f"innerloop {innerloop.__version__} (torch {version('torch')})"


def _parsers(parser: argparse.ArgumentParser, path: str = "innerloop"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}")


def _segment(help_text: str, option: str) -> str:
    """The help lines of ``option`` (up to the next option), whitespace collapsed."""
    start = re.search(rf"^  {re.escape(option)}\b.*$", help_text, re.M)
    assert start, option
    rest = help_text[start.start():]
    end = re.search(r"^  -", rest[2:], re.M)
    return " ".join((rest[: end.start() + 2] if end else rest).split())


OWNED = {"train", "eval", "reproduce", "finetune", "predict", "plot", "configs"}


def test_every_help_shows_the_defaults():
    checked = 0
    for path, parser in _parsers(_parser()):
        text = parser.format_help()
        for action in parser._actions:
            if not action.option_strings or action.required or action.nargs == 0 or action.default == []:
                continue
            segment = _segment(text, action.option_strings[0])
            if action.default is not None:
                assert "default" in segment and str(action.default) in segment, (path, segment)
                checked += 1
            elif path.split()[1:2] and path.split()[1] in OWNED:  # None: the help says what happens instead
                assert "default" in segment, (path, segment)
                checked += 1
    assert checked > 20


# -------------------------------------------------------------------------------- keys the task family ignores

@pytest.mark.parametrize("name, sets, key", [
    ("sinusoid/maml", ["task.ways=10000"], "task.ways"),
    ("sinusoid/lft", ['task.dataset="cub"'], "task.dataset"),
    ("omniglot/maml", ["task.amplitude=[1.0, 2.0]"], "task.amplitude"),
    ("lft/classification", ["task.uap_lambda=0.5"], "task.uap_lambda"),
    ("lft/uap", ["task.image_size=32"], "task.image_size"),
])
def test_a_key_the_family_ignores_is_refused(name, sets, key):
    family = config.load(name).task.family
    with pytest.raises(ConfigError, match=rf'^{re.escape(key)} applies to task.family = ".*", but this config has '
                                          rf'task.family = "{family}": remove {re.escape(key)} from --set'):
        config.load(name, sets)


def test_family_check_allows_defaults_other_families_and_a_changed_family():
    config.load("sinusoid/maml", ["task.ways=5", "task.dataset=\"omniglot\""])  # = the defaults: harmless
    config.load("omniglot/maml", ["task.ways=20"])
    config.load("lft/uap", ["task.ways=3", "task.uap_lambda=0.1"])
    cfg = config.load("sinusoid/maml", ['task.family="episodes"', "task.ways=10", 'model.name="conv4"'])
    assert cfg.task.ways == 10


def test_family_check_names_the_file_that_sets_the_key(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[task]\nfamily = "sinusoid"\nways = 20\n')
    with pytest.raises(ConfigError, match=f"remove task.ways from {re.escape(str(path))}"):
        config.load(str(path))
    assert main(["configs", "sinusoid/maml", "--set", "task.ways=10000"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ['innerloop: error: task.ways applies to task.family = "episodes", "records", "incongruous" or "uap", but this '
                   'config has task.family = "sinusoid": remove task.ways from --set (or change task.family)']
