"""The layout's rules hold for every source file: public Optuna only, a thin CLI, no module that
has grown into several jobs, resnext/ free of Optuna, data and plots, no import circle, layers
that import downwards only, no issue numbers, session numbers or dates in the code, and tests/
in folders that mirror the packages.

Each rule has a test that it catches a bad example, so that none passes vacuously."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    p
    for d in ("nas", "resnext", "studies", "scripts", "benchmarks")
    for p in (ROOT / d).rglob("*.py")
) + [ROOT / "cli.py"]
MAX_LINES = 900
# Optuna's private names this code once used, and the system-attribute keys behind them.
PRIVATE = re.compile(
    r"optuna(\.\w+)*\._\w+|\._backend\b|_set_trial_attr_without_commit|_create_scoped_session"
    r"|\._trial_id\b|_cached_frozen_trial|\._study_id\b|[\"'](fixed_params|failed_trial)[\"']"
)


def _code(path: Path) -> str:
    """The file without comments and docstrings: what runs, not what is said about it."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            if isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                body[0] = ast.Pass()
    return ast.unparse(tree)


def test_sources_are_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in SOURCES}
    assert {
        "cli.py",
        "nas/search/objective.py",
        "nas/search/storage.py",
        "resnext/spec.py",
    } <= names


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_private_optuna_name(path: Path) -> None:
    hits = [m.group(0) for m in PRIVATE.finditer(_code(path))]
    assert not hits, f"{path.name} uses Optuna's private API: {hits}"


def test_the_private_pattern_catches_what_it_should() -> None:
    """The guard above would pass vacuously if the pattern matched nothing."""
    for line in (
        "from optuna.storages._rdb import models",
        "trial.storage._backend",
        "t._cached_frozen_trial",
        "s.system_attrs['fixed_params']",
    ):
        assert PRIVATE.search(line), line
    for line in ("trial.set_user_attr('x', 1)", "storage.get_study_id_from_name(n)"):
        assert not PRIVATE.search(line), line


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_no_module_does_several_jobs(path: Path) -> None:
    n = len(path.read_text().splitlines())
    assert n <= (300 if path.name == "cli.py" else MAX_LINES), f"{path.name}: {n} lines"


def test_resnext_imports_no_optuna_data_or_plots() -> None:
    banned = {"optuna", "plotly", "nas", "studies", "PIL", "typer"}
    for path in (ROOT / "resnext").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                roots = {node.module.split(".")[0]}
            else:
                continue
            assert not roots & banned, f"{path.name} imports {roots & banned}"


# ------------------------------------------------------------------------------ import graph

# The modules whose imports are checked: the code, not its scripts and benchmarks.
PACKAGES = ("nas", "resnext", "studies")


def module_name(path: Path, root: Path = ROOT) -> str:
    """``nas/data/loader.py`` -> ``nas.data.loader``; ``nas/data/__init__.py`` -> ``nas.data``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking(node: ast.AST) -> bool:
    """Whether ``node`` is ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_names(source: str, module: str, is_package: bool, known: set[str]) -> set[str]:
    """Every name ``module`` imports, at module level or inside a function, as a dotted path:
    ``from nas.data import folder`` is ``nas.data.folder`` where that is a module of ``known``,
    relative imports are resolved; imports under ``if TYPE_CHECKING:`` never run and are left
    out."""
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _type_checking(node):
            for child in node.orelse:  # type: ignore[attr-defined]
                visit(child)
            return
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                anchor = ".".join(parts[: len(parts) - node.level + 1])
                base = f"{anchor}.{base}" if base else anchor
            for a in node.names:
                sub = f"{base}.{a.name}"
                names.add(sub if sub in known else base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(source))
    return names


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """``{module: (source, is_package)}`` -> the modules of ``sources`` each one imports: an
    import of a module's attribute or submodule resolved to the longest module that exists."""
    known = set(sources)
    graph: dict[str, set[str]] = {}
    for module, (source, is_package) in sources.items():
        targets = set()
        for name in imported_names(source, module, is_package, known):
            parts = name.split(".")
            for n in range(len(parts), 0, -1):
                if ".".join(parts[:n]) in known:
                    targets.add(".".join(parts[:n]))
                    break
        graph[module] = targets - {module}
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of ``graph``: its strongly connected components of more than one
    module (Tarjan's algorithm), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return sorted(circles)


def _sources() -> dict[str, tuple[str, bool]]:
    files = [p for d in PACKAGES for p in (ROOT / d).rglob("*.py")] + [ROOT / "cli.py"]
    return {module_name(p): (p.read_text(), p.name == "__init__.py") for p in files}


def test_no_import_circle() -> None:
    """Module-level and function-level imports alike: a circle hidden in a function still ties
    the modules together."""
    circles = import_circles(import_graph(_sources()))
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_circle_finder_catches_what_it_should() -> None:
    """The guard above would pass vacuously if the graph missed function-level imports, or
    took ``from a import b`` for the package rather than its module ``a.b``."""
    sources = {
        "a": ("", True),
        "a.x": ("from a import y\n", False),
        "a.y": ("def f():\n    from . import x\n", False),
        "a.z": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import a.w\n", False),
        "a.w": ("import a.z\n", False),
        "b": ("from a.x import thing\n", False),
    }
    graph = import_graph(sources)
    assert graph["a.x"] == {"a.y"} and graph["a.y"] == {"a.x"}
    assert graph["a.z"] == set() and graph["b"] == {"a.x"}
    assert import_circles(graph) == [["a.x", "a.y"]]
    guarded = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import x\n"
    sources["a.y"] = (guarded, False)
    assert import_circles(import_graph(sources)) == []


# ------------------------------------------------------------------------------- layering

# (importer, what it must not import): each a module or a package and everything under it.
LAYERS = [
    *(
        (low, high)
        for low in ("nas.data", "nas.training")
        for high in ("nas.search", "nas.stats", "nas.commands", "nas.dashboard", "nas.export")
    ),
    ("nas.data", "nas.training"),
    *(("nas.stats", m) for m in ("torch", "nas.data", "nas.training", "nas.search")),
    ("nas.search", "nas.commands"),
    ("nas.search", "nas.dashboard"),
]


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def layer_breaches(sources: dict[str, tuple[str, bool]]) -> list[str]:
    """``importer imports name`` for each import that crosses a layer the wrong way; and any
    import of nas.commands from nas/ outside nas/commands (cli.py may)."""
    known = set(sources)
    breaches = []
    for module, (source, is_package) in sorted(sources.items()):
        for name in sorted(imported_names(source, module, is_package, known)):
            for low, high in LAYERS:
                if _under(module, low) and _under(name, high):
                    breaches.append(f"{module} imports {name}")
            outside = _under(module, "nas") and not _under(module, "nas.commands")
            if outside and _under(name, "nas.commands"):
                breaches.append(f"{module} imports {name}")
    return breaches


def test_layers_import_downwards_only() -> None:
    """Data and training know nothing of the search, statistics, commands, dashboard or export;
    data nothing of training; statistics neither torch nor data, training or the search; the
    search neither commands nor the dashboard; only the commands (and cli.py) import commands."""
    breaches = layer_breaches(_sources())
    assert not breaches, "\n".join(breaches)


def test_the_layering_catches_what_it_should() -> None:
    """The guard above would pass vacuously if its prefixes matched nothing."""
    sources = {
        "nas": ("", True),
        "nas.data": ("", True),
        "nas.data.loader": ("def f():\n    from nas.training import loop\n", False),
        "nas.training": ("", True),
        "nas.training.loop": ("", False),
        "nas.stats": ("", True),
        "nas.stats.rank": ("import torch.nn\nfrom nas.search.records import trial_rows\n", False),
        "nas.search": ("", True),
        "nas.search.records": ("", False),
        "nas.export": ("from nas.commands.options import fail\n", False),
        "nas.commands": ("", True),
        "nas.commands.options": ("from nas.search import records\n", False),
        "nas.searching": ("import nas.commandsx\n", False),
    }
    assert layer_breaches(sources) == [
        "nas.data.loader imports nas.training.loop",
        "nas.export imports nas.commands.options",
        "nas.stats.rank imports nas.search.records",
        "nas.stats.rank imports torch.nn",
    ]


# ------------------------------------------------------------------------ no history in code

# The code says what holds, not how it came to be: no "issue 12" or "#12", no "session 3", no
# dated history such as 2026-11-28. A benchmark may print the date it measured at run time.
HISTORY = re.compile(
    r"\bissues?\s*#?\s*\d+"
    r"|(?:^|[\s(\[,;])#\d+\b(?![0-9a-fA-F])"
    r"|\bsessions?\s*#?\s*\d+"
    r"|\b(?:19|20)\d\d-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12]\d|3[01])\b",
    re.IGNORECASE | re.MULTILINE,
)
HISTORY_FILES = sorted(
    p
    for d in ("nas", "resnext", "studies", "scripts", "benchmarks")
    for p in (ROOT / d).rglob("*")
    if p.is_file() and p.suffix in (".py", ".sh")
) + [ROOT / "cli.py"]


def history(text: str) -> list[str]:
    """``line: match`` for each issue number, session number or date in ``text``."""
    return [
        f"{text.count(chr(10), 0, m.start()) + 1}: {m.group(0).strip()}"
        for m in HISTORY.finditer(text)
    ]


def test_no_issue_session_or_date_in_the_code() -> None:
    found = [
        f"{p.relative_to(ROOT).as_posix()}:{hit}"
        for p in HISTORY_FILES
        for hit in history(p.read_text())
    ]
    assert not found, "\n".join(found)


def test_the_history_pattern_catches_what_it_should() -> None:
    """The guard above would pass vacuously if the pattern matched nothing."""
    for line in (
        "# the cap (issue 12)",
        "# see #12",
        "# fixed in session 3",
        "# measured on 2026-11-28, torch 2.13",
        '"""Issues 4 and 5."""',
    ):
        assert history(line), line
    for line in (
        'colour = "#333333"',
        "# 12 images a class",
        "start_new_session=True",
        "print(f'measured {date.today():%Y-%m-%d}')",
        "torch==2.13.0",
    ):
        assert not history(line), line


# ----------------------------------------------------------------------------- tests/ itself


def misplaced_tests(tests: Path, root: Path = ROOT) -> list[str]:
    """Sub-folders of ``tests`` that name no package of the code (resnext/, studies/, a package
    under nas/, or cli/ for the commands end to end) or lack an ``__init__.py``; and test
    files whose name another test file has too."""
    packages = {"resnext", "studies", "cli"} | {
        p.parent.name for p in (root / "nas").glob("*/__init__.py")
    }
    found = []
    for folder in sorted(p for p in tests.iterdir() if p.is_dir() and p.name != "__pycache__"):
        if folder.name not in packages:
            found.append(f"{folder.name}/ names no package of the code")
        if not (folder / "__init__.py").is_file():
            found.append(f"{folder.name}/ has no __init__.py")
    names = sorted(p.name for p in tests.rglob("test_*.py"))
    found += [f"{n} twice" for n in sorted({n for n in names if names.count(n) > 1})]
    return found


def test_tests_mirror_the_packages() -> None:
    """A test of nas/search/ lives in tests/search/, of resnext/ in tests/resnext/, a command
    end to end in tests/cli/; suites across packages stay at the top of tests/."""
    assert not misplaced_tests(ROOT / "tests")


def test_the_tests_layout_catches_what_it_should(tmp_path: Path) -> None:
    """The guard above would pass vacuously if it looked at nothing."""
    for folder in ("search", "utils", "cli"):
        (tmp_path / folder).mkdir()
    (tmp_path / "search" / "__init__.py").write_text("")
    (tmp_path / "utils" / "__init__.py").write_text("")
    (tmp_path / "search" / "test_x.py").write_text("")
    (tmp_path / "cli" / "test_x.py").write_text("")
    assert misplaced_tests(tmp_path) == [
        "cli/ has no __init__.py",
        "utils/ names no package of the code",
        "test_x.py twice",
    ]
