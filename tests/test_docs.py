"""Every command README.md and docs/*.md show is accounted for, and every figure they quote names its source.

A shell block (```bash, ```sh, ```shell, ```console or a bare fence) carries a marker on the line
before it, an HTML comment, for all its commands:
``<!-- run: ... -->`` (run here, in order, in a sandbox laid out like the repository's top: a small
``runs/demo/artifacts``, the a8fda90 fixture run, the venv; a command whose comment says ``# exits N: why``
must exit N), ``<!-- synopsis: ... -->`` (the flags it shows must be in the command's ``--help``),
``<!-- run by: tests/x.py::test_y -->`` (that test must exist) or ``<!-- not run: why -->``;
or each command carries the same marker as a trailing ``# not run: why`` / ``# run by: ...`` comment.
Blocks that hold no commands (layouts, output) are fenced as ```text. A ```python block carries a
``run`` (run here, the fixture run as runs/demo), ``run by`` or ``not run`` marker the same way.
The configuration reference's TOML is loaded and must show the defaults. A paragraph quoting a measured
figure (a number with a unit: us, ms, s, KiB, %, x, ...) names the command that measured it or the file
holding it with its command (``benchmarks/*.md``, a ``*.json``); limits and examples say so in a
``<!-- figures: why -->`` comment.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from cllnn_edge.config import Config
from export.formats.registry import FORMATS
from tests.runtime.conftest import TinyModels, tiny  # noqa: F401  (the session fixture, used below)
from tests.runtime.helpers import write_artifacts

ROOT = Path(__file__).parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")))
BIN = Path(sys.executable).parent
FIXTURE = ROOT / "tests" / "fixtures" / "run_a8fda90"
SHELL_LANGS = {"bash", "sh", "shell", "console", ""}
FENCE = re.compile(r"^\s*```(\w*)\s*$")
BLOCK_MARK = re.compile(r"^\s*<!--\s*(run by|not run|synopsis|run)\s*:\s*(.*?)\s*-->\s*$")
LINE_MARK = re.compile(r"#\s*(run by|not run):\s*(.+)$")
EXIT = re.compile(r"#\s*exits (\d+):\s*\S")
TEST_ID = re.compile(r"^(tests/[\w/]+\.py)::(test_\w+)")
KINDS = ("run", "synopsis", "run by", "not run")


@dataclass(frozen=True)
class Command:
    """One command a page shows, where it is, and how the suite accounts for it."""

    page: str
    line: int
    text: str  # continuation lines joined, the trailing comment dropped
    kind: str | None  # one of KINDS, or None: unaccounted
    why: str
    exit_code: int = 0  # what a ``run`` command must exit with: 0 unless its comment says ``# exits N: why``

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _commands(lines: list[str], start: int, end: int, page: str, mark: tuple[str, str] | None) -> list[Command]:
    """The commands of the shell block lines[start:end] (continuations joined, comment-only lines skipped)."""
    found, pending, first = [], "", 0
    for number in range(start, end):
        raw = lines[number]
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        first = first if pending else number + 1
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        whole, pending = pending + raw, ""
        line_mark = LINE_MARK.search(whole)
        kind, why = (line_mark.group(1), line_mark.group(2)) if line_mark else (mark or (None, ""))
        text = whole[: line_mark.start()] if line_mark else whole
        text = " ".join(shlex.split(text, comments=True)) if "'" not in text else text.split("  #")[0].strip()
        expected = EXIT.search(whole)
        found.append(Command(page, first, text, kind, why.strip(), int(expected.group(1)) if expected else 0))
    return found


def page_commands(path: Path) -> list[Command]:
    """Every command of the page's shell blocks."""
    lines, found, number = path.read_text().split("\n"), [], 0
    page = path.relative_to(ROOT).as_posix()
    while number < len(lines):
        fence = FENCE.match(lines[number])
        if not fence:
            number += 1
            continue
        end = next(i for i in range(number + 1, len(lines)) if lines[i].strip().startswith("```"))
        if fence.group(1) in SHELL_LANGS:
            before = BLOCK_MARK.match(lines[number - 1]) if number else None
            mark = (before.group(1), before.group(2)) if before else None
            found += _commands(lines, number + 1, end, page, mark)
        number = end + 1
    return found


ALL = [command for page in PAGES for command in page_commands(page)]


def _of(kind: str) -> list[Command]:
    return [command for command in ALL if command.kind == kind]


def test_the_pages_show_commands_of_every_kind() -> None:
    assert len(PAGES) >= 10 and len(ALL) >= 30, [str(c) for c in ALL]
    assert all(_of(kind) for kind in KINDS)


@pytest.mark.parametrize("command", ALL, ids=str)
def test_every_shell_command_is_run_checked_or_marked(command: Command) -> None:
    assert command.kind in KINDS, f"{command}: no marker (<!-- run/synopsis/run by/not run: ... --> or # not run: why)"
    if command.kind == "not run":
        assert len(command.why.split()) >= 2, f"{command}: 'not run' needs a reason"
    if command.kind == "run by":
        test_id = TEST_ID.match(command.why)
        assert test_id, f"{command}: 'run by' names tests/FILE.py::test_NAME, got {command.why!r}"
        test_file = ROOT / test_id.group(1)
        assert test_file.is_file(), f"{command}: {test_id.group(1)} does not exist"
        assert re.search(rf"^def {test_id.group(2)}\(", test_file.read_text(), re.M), \
            f"{command}: {test_id.group(0)} does not exist"


def _help_of(words: list[str]) -> list[str]:
    """The argv of the --help that documents ``words`` (a cllnn-export / cllnn-bench / benchmarks command)."""
    words = [w for w in words if not re.match(r"^[A-Z_]+=", w)]
    program = Path(words[0]).name
    if program == "cllnn-export":
        return [str(BIN / program), words[1], "--help"]
    if program == "cllnn-bench":
        sub = [words[1]] if len(words) > 1 and words[1] in ("verify", "select") else []
        return [str(BIN / program), *sub, "--help"]
    if program == "python" and words[1:3] == ["-m", "benchmarks"]:
        return [sys.executable, "-m", "benchmarks", "--help"]
    raise AssertionError(f"a synopsis of an unknown program: {words}")


@pytest.mark.parametrize("command", _of("synopsis"), ids=str)
def test_a_synopsis_shows_only_flags_its_command_has(command: Command) -> None:
    words = command.text.replace("[", " ").replace("]", " ").split()
    argv = _help_of(words)
    shown = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert shown.returncode == 0, shown.stderr
    flags = {w.split("=")[0] for w in words if w.startswith("--")}
    missing = sorted(flag for flag in flags if not re.search(rf"{re.escape(flag)}\b", shown.stdout))
    assert flags and not missing, f"{command}: not in `{' '.join(argv[-3:])}`: {missing}"


def _subcommands() -> list[str]:
    shown = subprocess.run([str(BIN / "cllnn-export"), "--help"], capture_output=True, text=True, timeout=60)
    names = re.search(r"\{([\w,-]+)\}", shown.stdout)
    listed = names.group(1).split(",") if names else re.findall(r"^    (\w+)\s", shown.stdout, re.M)
    assert len(listed) >= 8, shown.stdout
    return listed


def test_every_subcommand_has_help_and_a_page() -> None:
    text = "\n".join(page.read_text() for page in PAGES)
    commands = [("cllnn-export", name) for name in _subcommands()] + [("cllnn-bench", "verify"),
                                                                      ("cllnn-bench", "select")]
    for program, name in commands:
        shown = subprocess.run([str(BIN / program), name, "--help"], capture_output=True, text=True, timeout=60)
        assert shown.returncode == 0 and "usage:" in shown.stdout, (program, name, shown.stderr)
        assert f"{program} {name}" in text, f"no page shows `{program} {name}`"


def test_the_commands_marked_run_pass_in_a_sandbox(tiny: TinyModels, tmp_path: Path) -> None:  # noqa: F811
    """The blocks marked ``run``, in page order, in a directory laid out like the repository's top: a small
    runs/demo/artifacts, a copy of the a8fda90 fixture run, and the venv and scripts/ linked in."""
    (tmp_path / "runs" / "demo").mkdir(parents=True)
    write_artifacts(tiny, tmp_path / "runs" / "demo" / "artifacts")
    shutil.copytree(FIXTURE, tmp_path / FIXTURE.relative_to(ROOT))
    (tmp_path / ".venv").symlink_to(BIN.parent)
    (tmp_path / "scripts").symlink_to(ROOT / "scripts")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    ran = _of("run")
    for command in ran:
        done = subprocess.run(["bash", "-c", command.text], cwd=tmp_path, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == command.exit_code, \
            f"{command}: exit {done.returncode}, not {command.exit_code}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
    assert len(ran) >= 10 and (tmp_path / "deploy" / "selection.json").is_file()
    assert (tmp_path / "deploy-a8fda90" / "selection.json").is_file() and (tmp_path / "verify.json").is_file()


def test_mkdocs_builds_strict(tmp_path: Path) -> None:
    done = subprocess.run([str(BIN / "mkdocs"), "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "limitations" / "index.html").is_file()


def test_readme_is_short_and_keeps_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text().split("\n")
    assert len(lines) < 200
    assert any(line.startswith("make demo   # creates .venv") for line in lines)
    assert any(line.startswith("make test   # creates .venv") for line in lines)
    assert "make test" in (ROOT / ".ci" / "run").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert "cllnn-export run --data embedded --out runs/demo" in makefile and "mkdocs build --strict" in makefile


def python_blocks(path: Path) -> list[tuple[int, str, tuple[str, str] | None]]:
    """(line, code, its marker) of every ```python block of the page."""
    lines, found = path.read_text().split("\n"), []
    for number, line in enumerate(lines):
        if re.match(r"^\s*```python\s*$", line):
            end = next(i for i in range(number + 1, len(lines)) if lines[i].strip().startswith("```"))
            before = BLOCK_MARK.match(lines[number - 1]) if number else None
            found.append((number + 1, "\n".join(lines[number + 1:end]), before.groups() if before else None))
    return found


PYTHON = [(page.relative_to(ROOT).as_posix(), *block) for page in PAGES for block in python_blocks(page)]


@pytest.mark.parametrize(("page", "line", "code", "mark"), PYTHON, ids=[f"{p}:{n}" for p, n, _, _ in PYTHON])
def test_every_python_example_is_run_or_names_its_test(page: str, line: int, code: str, mark: tuple | None,
                                                        tmp_path: Path) -> None:
    """A ``run`` example runs here with the a8fda90 fixture run as runs/demo; ``run by`` names a test."""
    assert mark is not None and mark[0] in ("run", "run by", "not run"), f"{page}:{line}: no marker"
    if mark[0] == "run by":
        test_id = TEST_ID.match(mark[1])
        assert test_id and re.search(rf"^def {test_id.group(2)}\(", (ROOT / test_id.group(1)).read_text(), re.M)
    if mark[0] == "run":
        shutil.copytree(FIXTURE, tmp_path / "runs" / "demo")
        done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                              timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
        assert done.returncode == 0, f"{page}:{line}: {done.stderr[-2000:]}"


def test_the_configuration_reference_is_a_config_the_toolkit_accepts_with_its_defaults(tmp_path: Path) -> None:
    """docs/configuration.md's TOML loads through the config checks and shows the defaults, so it cannot go
    stale (its one example table, a calibration override, is the only difference)."""
    block = re.search(r"```toml\n(.*?)```", (ROOT / "docs" / "configuration.md").read_text(), re.S)
    assert block is not None
    path = tmp_path / "reference.toml"
    path.write_text(block.group(1))
    shown, defaults = Config.from_toml(path).to_dict(), Config().to_dict()
    assert shown["export"].pop("calibration") == {"onnx-int8": {"method": "minmax", "images": 200}}
    defaults["export"].pop("calibration")
    assert shown == defaults
    listed = set(re.findall(r"\b(?:tflite|onnx|tflm)-[a-z0-9]+\b", block.group(1).split("[export]")[1]))
    assert listed >= set(FORMATS), f"formats the reference does not name: {sorted(set(FORMATS) - listed)}"


# A measured figure: a number with a unit of time, size, share or ratio (tolerances, limits and example messages
# match too: their paragraph carries ``<!-- figures: why these are not measurements -->``).
FIGURE = re.compile(r"\d[\d,.]*\s?(?:%|x\b|us\b|µs|ms\b|min\b|minutes\b|s\b|seconds\b|KiB\b|MiB\b|MB\b|KB\b|kB\b"
                    r"|G\b|GMAC)")
# Where a figure says it comes from: the command that measured it, or the page or file that holds it with
# its command (benchmarks/*.md, a run's *.json, the Benchmarks page).
SOURCE = re.compile(r"`[^`]*(?:cllnn-export|cllnn-bench|python -m benchmarks|python -X|make |\.ci/run|du -|timeit"
                    r"|scripts/)[^`]*`|benchmarks/[A-Z0-9_]+\.md|\b[\w./-]+\.json\b|\]\(benchmarks\.md")
FIGURES_MARK = re.compile(r"<!--\s*figures:\s*\S[^>]*-->")
ITEM = re.compile(r"\n(?= {0,3}(?:- |\d+\. ))")


def _paragraphs(path: Path) -> list[tuple[str, str]]:
    """(paragraph or list item, the one before it) of the page's prose: code blocks and headings left out,
    a marked paragraph left out, a table kept whole."""
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    found, before = [], ""
    for block in re.split(r"\n\s*\n", text):
        parts = [block] if block.lstrip().startswith("|") else ITEM.split(block)
        for part in parts:
            if FIGURES_MARK.search(part):
                before = ""
            elif part.strip() and not part.lstrip().startswith("#"):
                found.append((part.strip(), before))
                before = part.strip()
    return found


def test_every_figure_names_the_command_that_measured_it() -> None:
    """No stale claim: a paragraph with a measured figure names its command or the file holding it (a table
    may take it from the paragraph that introduces it)."""
    unsourced = [f"{page.relative_to(ROOT)}: {text[:160]!r}" for page in PAGES for text, before in _paragraphs(page)
                 if FIGURE.search(text) and not SOURCE.search(text)
                 and not (text.startswith("|") and SOURCE.search(before))]
    assert not unsourced, "\n".join(unsourced)
