"""Every ``selip`` command a user copies from the README or the docs site still parses: the
subcommand exists, and each option is one that subcommand takes. Training commands (``fit``,
``validate``, ``test``, ``predict``) go through the real parser with ``--print_config``, so
their ``--config`` file and every ``--section.key`` are checked; the other subcommands'
options are looked up in their ``--help``. Runs in-process: one import for all commands."""

from __future__ import annotations

import re
import shlex

import pytest

from selip.cli import COMMANDS, TRAINING_COMMANDS, main
from tests.doc_pages import FENCE, PAGES, ROOT

SHELL = ("bash", "console", "sh", "")


def shell_lines() -> list[tuple[str, str]]:
    """(where, line) for every line of every shell block, continuation lines joined."""
    return [(f"{page.relative_to(ROOT)}: {line.strip()[:70]}", line)
            for page in PAGES for language, block in FENCE.findall(page.read_text())
            if language in SHELL for line in block.replace("\\\n", " ").splitlines()]


def doc_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after ``selip``) for every command line starting with ``selip`` or
    ``.venv/bin/selip`` in a shell block, comments dropped."""
    return [(where, shlex.split(line, comments=True)[1:]) for where, line in shell_lines()
            if re.match(r"\s*(\.venv/bin/)?selip\s+\w", line)]


COMMANDS_IN_DOCS = doc_commands()


def test_the_docs_hold_commands_of_every_kind():
    kinds = {argv[0] for _, argv in COMMANDS_IN_DOCS}
    assert {"fit", "test", "prepare", "import", "embed", "search", "export"} <= kinds


@pytest.mark.parametrize(("where", "argv"), COMMANDS_IN_DOCS,
                         ids=[where for where, _ in COMMANDS_IN_DOCS])
def test_a_documented_command_parses(where, argv, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # configs/… are relative to the checkout, as the docs show
    command = argv[0]
    assert command in TRAINING_COMMANDS or command in COMMANDS, f"{where}: no such command"
    if command in TRAINING_COMMANDS:
        with pytest.raises(SystemExit) as done:
            main([*argv, "--print_config"])
        assert done.value.code in (0, None), f"{where}:\n{capsys.readouterr().err[-2000:]}"
        return
    subcommand = [word for word in argv[1:2] if not word.startswith("-")]  # import dicom
    with pytest.raises(SystemExit):
        main([command, *subcommand, "--help"])
    usage = capsys.readouterr().out
    for option in (word.split("=")[0] for word in argv if word.startswith("--")):
        assert option in usage, f"{where}: {command} has no option {option}"


def doc_benchmark_commands() -> list[tuple[str, str, list[str]]]:
    """(where, script name, argv) for every ``python benchmarks/<name>.py`` line in a shell
    block, comments dropped."""
    found = []
    for where, line in shell_lines():
        match = re.search(r"python\s+benchmarks/(\w+)\.py(.*)", line)
        if match:
            found.append((where, match.group(1), shlex.split(match.group(2), comments=True)))
    return found


BENCHMARK_COMMANDS = doc_benchmark_commands()


@pytest.mark.parametrize(("where", "name", "argv"), BENCHMARK_COMMANDS,
                         ids=[where for where, _, _ in BENCHMARK_COMMANDS])
def test_a_documented_benchmark_command_takes_its_options(where, name, argv, capsys,
                                                           monkeypatch):
    from tests.benchmark_scripts import BENCHMARKS, load_benchmark

    assert (BENCHMARKS / f"{name}.py").is_file(), f"{where}: no benchmarks/{name}.py"
    monkeypatch.setattr("sys.argv", [f"benchmarks/{name}.py", "--help"])
    with pytest.raises(SystemExit):
        load_benchmark(name).main()
    usage = capsys.readouterr().out
    for option in (word.split("=")[0] for word in argv if word.startswith("--")):
        assert option in usage, f"{where}: benchmarks/{name}.py has no option {option}"
