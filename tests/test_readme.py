"""Every command in the README runs as written: each `python -m m3bert.<entry point>` line of its bash blocks is
composed (every job of a sweep) and passes the checks its entry point makes before doing any work, and every
`make` target it names exists."""

import itertools
import re
import shlex

import pytest
from conftest import CONF, ROOT
from hydra import compose, initialize_config_dir

from m3bert.training import records
from m3bert.training.schemas import check_train_config

CHECKS = {"prepare": "m3bert.prepare:check_prepare_config", "extract": "m3bert.extract:check_extract_config"}


def readme_commands() -> list[list[str]]:
    """The README's shell commands, continuation lines joined and comments dropped, split as a shell would."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            words = shlex.split(line, comments=True)
            if words:
                commands.append(words)
    return commands


def entry_point(words: list[str]) -> tuple[str, list[str]] | None:
    """(module, arguments) of a `python -m m3bert.X ...` or `torchrun ... -m m3bert.X ...` command."""
    if "-m" not in words or words[0] not in ("python", "torchrun"):
        return None
    at = words.index("-m")
    module = words[at + 1]
    return (module, words[at + 2 :]) if module.startswith("m3bert.") else None


def jobs(arguments: list[str]) -> list[list[str]]:
    """Every job a (multi)run of these overrides launches."""
    overrides = [a for a in arguments if a != "-m"]
    choices = []
    for override in records.parse_overrides(overrides):
        if override.is_sweep_override():
            key = override.get_key_element()
            choices.append([f"{key}={value}" for value in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [list(job) for job in itertools.product(*choices)]


COMMANDS = [c for c in readme_commands() if entry_point(c)]


def test_the_readme_has_commands_of_every_entry_point():
    modules = {entry_point(c)[0] for c in COMMANDS}
    assert {"m3bert.train", "m3bert.prepare", "m3bert.report", "m3bert.export", "m3bert.extract"} <= modules


@pytest.mark.parametrize("words", COMMANDS, ids=[" ".join(c)[:80] for c in COMMANDS])
def test_a_readme_command_composes_and_passes_the_checks_made_before_any_work(words):
    import importlib

    module, arguments = entry_point(words)
    name = module.removeprefix("m3bert.")
    if name == "report":  # not Hydra-composed: its own parser
        return
    if name == "reproduce":  # a dry run composes and checks every job of the pipeline, and runs none
        from m3bert import reproduce

        assert reproduce.main([*arguments, "dry_run=true"])["pretrain"]
        return
    launched = jobs(arguments)
    assert len(launched) == 1 or "-m" in arguments, "a sweep needs -m"
    for job in launched:
        with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
            cfg = compose({"train": "train"}.get(name, name), overrides=job)
        if name == "train":
            check_train_config(cfg)
        elif name in CHECKS:
            path, function = CHECKS[name].split(":")
            getattr(importlib.import_module(path), function)(cfg)


def test_every_make_target_the_readme_names_exists():
    targets = set(re.findall(r"^([a-zA-Z_-]+):", (ROOT / "Makefile").read_text(), flags=re.M))
    named = {word for c in readme_commands() if c[0] == "make" for word in c[1:] if "=" not in word}
    assert named and named <= targets, named - targets
