"""The documentation: its examples run, the README stays a front page, the site builds.

(a) Every fenced ``python`` and ``bash`` block of README.md and docs/**/*.md runs, page by
    page in document order, in a fresh temporary directory per page, so that a block can
    read the files an earlier block of its page wrote. Python blocks run in this interpreter,
    each in a namespace of its own; bash blocks run with ``bash -e``, finding the
    ``hyperunmix`` command of this interpreter first on PATH. A line
    ``--8<-- "path"`` inside a block stands for that file (relative to the repository root),
    as pymdownx.snippets includes it on the site.

    An HTML comment on the line just before a block's opening fence changes how it runs:

    ``<!-- docs-test: needs-data -->``
        the block needs the real datasets; it runs when they are found in the package's
        data directory (``$HYPERUNMIX_DATA`` when it is set, as on CI, else the user data
        directory; given to the block as ``$HYPERUNMIX_DATA``) and is skipped otherwise,
        failing instead on CI (``$CI`` set) like the other real-data tests.
    ``<!-- docs-test: skip REASON -->``
        the block cannot run here (it installs packages, downloads, needs a CUDA device or a
        cluster, or trains at full length): reported as skipped with REASON. Python ones are
        still compiled.

(b) The README is under 150 lines, keeps .ci/run's test command verbatim, and its relative
    links lead to files that exist.

(c) ``mkdocs build --strict`` succeeds (skipped when mkdocs is not installed).
"""

from __future__ import annotations

import contextlib
import linecache
import logging
import os
import random
import re
import shutil
import subprocess
import sys
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAGES = [README, *sorted((REPO / "docs").rglob("*.md"))]
README_MAX_LINES = 150

RUNNABLE = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}
MARKER = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<kind>\S+)\s*(?P<reason>.*?)\s*-->\s*$")
# A comment line that starts like a marker (a mention inside other text is not one).
ANY_MARKER = re.compile(r"^\s*<!--\s*docs-test\b")
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
SNIPPET = re.compile(r"""^\s*--8<--\s+["']?(?P<path>[^"'\s]+)["']?\s*$""")
# What a block that reads the real datasets looks like; such a block must carry needs-data.
USES_DATA = re.compile(
    r"datasets\.load|load_library|load_abundance_maps|HYPERUNMIX_DATA|"
    r"\bsamson\b|\bjasper_ridge\b|library=\"usgs\"|\"spatial2\"|"
    r"\"spatial_3em\"|\"squares_3em\""
)


@dataclass(frozen=True)
class Block:
    page: str  # path relative to the repository
    line: int  # 1-based line of the opening fence
    lang: str  # "python" or "bash"
    code: str  # the block's text, snippets expanded
    first_code_line: int  # 1-based page line of the code's first line
    marker: str | None  # "skip", "needs-data" or None
    reason: str

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"


def _relative(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _expand_snippets(code: str) -> str:
    lines = []
    for line in code.splitlines():
        found = SNIPPET.match(line)
        if found:
            included = REPO / found["path"]
            lines.extend(included.read_text(encoding="utf-8").rstrip("\n").splitlines())
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def _fences(path: Path):
    """(opening line index, info string, code lines, the page's lines) of every fenced block."""
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        fence, indent = opening["fence"], len(opening["indent"])
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        body = [line[indent:] if line[:indent].strip() == "" else line for line in lines[i + 1 : j]]
        yield i, opening["info"].strip(), body, lines
        i = j + 1


def _marker_before(lines: list[str], index: int) -> tuple[str | None, str]:
    """The docs-test marker on the last non-blank line before line ``index``."""
    k = index - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    if k < 0:
        return None, ""
    found = MARKER.match(lines[k])
    return (found["kind"], found["reason"]) if found else (None, "")


def collect_blocks(pages=PAGES) -> list[Block]:
    blocks = []
    for path in pages:
        for index, info, body, lines in _fences(path):
            lang = RUNNABLE.get(info.split()[0].lower() if info else "")
            if lang is None:
                continue
            kind, reason = _marker_before(lines, index)
            blocks.append(
                Block(
                    _relative(path),
                    index + 1,
                    lang,
                    _expand_snippets("\n".join(body)),
                    index + 2,
                    kind,
                    reason,
                )
            )
    return blocks


BLOCKS = collect_blocks()


# -- where the real datasets are -----------------------------------------------------------
#: The files the needs-data examples read, relative to the data directory.
DATA_FILES = (
    "samson/samson_1.mat",
    "samson/end3.mat",
    "jasper_ridge/jasperRidge2_R198.mat",
    "jasper_ridge/end4.mat",
    "libraries/USGS_1995_Library.mat",
    "libraries/spectral_library_samson.mat",
    "libraries/spectral_library_jasperRidge.mat",
    "libraries/AVIRIS_wavelengths.mat",
    "synthetic_abundances/spatial2.mat",
)


def _data_dir() -> Path | None:
    """The package's data directory ($HYPERUNMIX_DATA, else the user data directory: the
    lookup of every command), when it holds the files the examples read."""
    from hyperunmix import datasets

    path = Path(datasets.data_home())
    return path if all((path / rel).is_file() for rel in DATA_FILES) else None


# -- running blocks -----------------------------------------------------------------------
@contextlib.contextmanager
def _isolated(workdir: Path, env: dict[str, str]):
    """Run in ``workdir`` with ``env`` set, and put back what an example may change in this
    interpreter: working directory, environment, random states, torch threads, warning
    filters, logging levels, open figures."""
    cwd, environ = os.getcwd(), dict(os.environ)
    py_state, np_state = random.getstate(), np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = (torch.get_rng_state(), torch.get_num_threads()) if torch else None
    loggers = {name: logging.getLogger(name).level for name in ("", "hyperunmix")}
    root_handlers = list(logging.getLogger().handlers)
    os.chdir(workdir)
    os.environ.update(env)
    try:
        with warnings.catch_warnings():
            yield
    finally:
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(environ)
        random.setstate(py_state)
        np.random.set_state(np_state)
        if torch_state is not None:
            torch.set_rng_state(torch_state[0])
            torch.set_num_threads(torch_state[1])
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)
        root = logging.getLogger()
        for handler in list(root.handlers):
            if handler not in root_handlers:
                root.removeHandler(handler)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")


def _run_python(block: Block, workdir: Path, env: dict[str, str]) -> str | None:
    """None on success, else the traceback, with line numbers of the page."""
    filename = str(REPO / block.page)
    source = "\n" * (block.first_code_line - 1) + block.code
    # Tracebacks show the page's lines (snippet lines are shown as they expanded).
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    try:
        code = compile(source, filename, "exec")
    except SyntaxError:
        return traceback.format_exc()
    namespace = {
        "__name__": "__main__",
        "__file__": str(workdir / "example.py"),
        "__builtins__": __builtins__,
    }
    try:
        with _isolated(workdir, env):
            exec(code, namespace)
    except BaseException as error:
        if isinstance(error, KeyboardInterrupt):
            raise
        return traceback.format_exc()
    finally:
        namespace.clear()
    return None


def _run_bash(block: Block, workdir: Path, env: dict[str, str]) -> str | None:
    bin_dir = str(Path(sys.executable).parent)
    full_env = {
        **os.environ,
        **env,
        "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
        "COLUMNS": "100",
        "NO_COLOR": "1",
    }
    process = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-x", "-c", block.code],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    if process.returncode == 0:
        return None
    return (
        f"exit status {process.returncode}\n--- stdout (end) ---\n{process.stdout[-3000:]}"
        f"\n--- stderr (end; '+' lines are the commands) ---\n{process.stderr[-5000:]}"
    )


class PageRun:
    """A page's blocks, run once each, in document order, in the page's own directory."""

    def __init__(self, page: str, workdir: Path):
        self.blocks = [b for b in BLOCKS if b.page == page]
        self.workdir = workdir
        self.outcomes: dict[int, tuple[str, str]] = {}
        self.next = 0

    def outcome(self, block: Block) -> tuple[str, str]:
        target = self.blocks.index(block)
        while self.next <= target:
            current = self.blocks[self.next]
            self.outcomes[self.next] = self._run(current)
            self.next += 1
        status, message = self.outcomes[target]
        if status == "failed":
            earlier = [self.blocks[i].id for i in range(target) if self.outcomes[i][0] != "passed"]
            if earlier:
                message += (
                    "\n(earlier blocks of this page did not run or failed, and this "
                    f"one may depend on their files: {', '.join(earlier)})"
                )
        return status, message

    def _run(self, block: Block) -> tuple[str, str]:
        if block.marker == "skip":
            return "skipped", f"{block.id}: {block.reason}"
        env = {}
        data = _data_dir()
        if data is not None:
            env["HYPERUNMIX_DATA"] = str(data)
        elif block.marker == "needs-data":
            from hyperunmix import datasets

            where = datasets.data_home()
            if os.environ.get("CI"):
                return "failed", f"CI needs the datasets at {where} (set HYPERUNMIX_DATA)"
            return "skipped", f"{block.id}: needs the real datasets, not found at {where}"
        run = _run_python if block.lang == "python" else _run_bash
        error = run(block, self.workdir, env)
        return ("passed", "") if error is None else ("failed", error)


@pytest.fixture(scope="module")
def page_runs(tmp_path_factory):
    runs: dict[str, PageRun] = {}

    def get(page: str) -> PageRun:
        if page not in runs:
            slug = re.sub(r"[^A-Za-z0-9]+", "-", page).strip("-")
            runs[page] = PageRun(page, tmp_path_factory.mktemp(slug))
        return runs[page]

    return get


@pytest.mark.parametrize("block", BLOCKS, ids=[b.id for b in BLOCKS])
def test_example_runs(block: Block, page_runs):
    status, message = page_runs(block.page).outcome(block)
    if status == "skipped":
        pytest.skip(message)
    if status == "failed":
        pytest.fail(f"the {block.lang} block at {block.id} failed:\n{message}", pytrace=False)


# -- the markers themselves ------------------------------------------------------------------
def test_markers_are_well_formed():
    """Every docs-test comment is a known marker placed just before a runnable block, and a
    skip says why."""
    problems = []
    for path in PAGES:
        lines = path.read_text(encoding="utf-8").splitlines()
        fences = {index: info for index, info, _, _ in _fences(path)}
        for number, line in enumerate(lines):
            if not ANY_MARKER.search(line):
                continue
            where = f"{_relative(path)}:{number + 1}"
            found = MARKER.match(line)
            if not found or found["kind"] not in ("skip", "needs-data"):
                problems.append(f"{where}: unknown marker {line.strip()!r}")
                continue
            if found["kind"] == "skip" and not found["reason"]:
                problems.append(f"{where}: a skip marker needs a reason")
            if found["kind"] == "needs-data" and found["reason"]:
                problems.append(f"{where}: needs-data takes no reason")
            k = number + 1
            while k < len(lines) and not lines[k].strip():
                k += 1
            info = fences.get(k)
            if info is None or RUNNABLE.get((info.split() or [""])[0].lower()) is None:
                problems.append(f"{where}: the marker is not followed by a python or bash block")
    assert not problems, "\n".join(problems)


def test_blocks_reading_the_datasets_are_marked():
    """A block that reads the real datasets says so, so that it is skipped without them
    instead of failing."""
    unmarked = [b.id for b in BLOCKS if b.marker is None and USES_DATA.search(b.code)]
    assert not unmarked, (
        f"these blocks use the real datasets but lack <!-- docs-test: needs-data -->: {unmarked}"
    )


def test_skipped_python_blocks_compile():
    for block in BLOCKS:
        if block.lang == "python" and block.marker == "skip":
            compile(block.code, block.id, "exec")


def test_every_page_has_its_blocks_found():
    """The parser sees the blocks that are there (a fence it missed would go untested)."""
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        opened = len(re.findall(r"^[ \t]*```\s*(?:python|py|bash|sh|shell)\b", text, re.M))
        found = sum(1 for b in BLOCKS if b.page == _relative(path))
        assert found == opened, f"{_relative(path)}: {opened} fenced blocks, {found} parsed"


# -- (b) the README -----------------------------------------------------------------------
def test_readme_is_a_short_front_page():
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines < README_MAX_LINES, (
        f"README.md has {n_lines} lines; keep it under {README_MAX_LINES}: the manual is docs/"
    )


def test_readme_keeps_the_ci_test_command_verbatim():
    """.ci/run runs the README's test command; the two must not drift apart."""
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    commands = [
        line.strip()
        for line in ci
        if "python -m pytest" in line and not line.lstrip().startswith("#")
    ]
    assert commands, ".ci/run runs no `python -m pytest` command"
    readme = {line.strip() for line in README.read_text(encoding="utf-8").splitlines()}
    for command in commands:
        assert command in readme, f".ci/run's test command is not in README.md verbatim: {command}"


def test_readme_links_lead_somewhere():
    text = README.read_text(encoding="utf-8")
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue
        if not (REPO / target.split("#")[0]).exists():
            missing.append(target)
    assert not missing, f"README.md links to missing files: {missing}"


def test_readme_sections_included_by_the_site_exist():
    """docs/ includes README sections (``--8<-- "README.md:name"``); each must be marked."""
    readme = README.read_text(encoding="utf-8")
    for path in PAGES[1:]:
        for name in re.findall(r'--8<--\s+"README\.md:([\w-]+)"', path.read_text("utf-8")):
            assert f"--8<-- [start:{name}]" in readme and f"--8<-- [end:{name}]" in readme, (
                f"{_relative(path)} includes README section {name!r}, which README.md lacks"
            )


# -- (c) the site -------------------------------------------------------------------------
def test_site_builds_strictly(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings", "mkdocstrings_handlers.python"):
        pytest.importorskip(
            module, reason='the docs extra is not installed (pip install -e ".[docs]")'
        )
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    process = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    log = process.stdout + process.stderr
    assert process.returncode == 0, f"mkdocs build --strict failed:\n{log[-6000:]}"
    site = tmp_path / "site"
    assert (site / "index.html").is_file() and (site / "benchmark-results" / "index.html").is_file()
    shutil.rmtree(site, ignore_errors=True)
