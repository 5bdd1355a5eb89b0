"""The layers (ARCHITECTURE.md), checked on the source: who may import whom, and how big a piece may be.

The rule: a package imports itself, the `vocab` leaf (names and states every layer shares), and the
packages it calls directly (CALLS); nothing else, and never anything that calls it.
"""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = "vocab"
CALLS = {
    "cli": {"web", "hub", "registry"},  # `aid serve` runs the web app; `aid publish` packs client-side
    "web": {"hub"},
    "hub": {"registry", "runners", "monitor", "database"},
    "registry": {"database"},
    "monitor": {"database"},
    "runners": set(),
    "database": set(),
    "vocab": set(),
}
PACKAGES = list(CALLS)
HEAVY = {"torch", "evidently", "onnxruntime", "sklearn", "bentoml"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 40
SOURCE_FOLDERS = [*PACKAGES, "tests", "benchmarks", "scripts", "examples"]


def allowed(package: str) -> set[str]:
    return {package, SHARED} | CALLS[package]


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def sources(package: str, skip: str = "") -> list[Path]:
    return [p for p in (REPO / package).rglob("*.py") if not (skip and skip in p.parts)]


def below(package: str) -> set[str]:
    """Every package that `package` calls, directly or through others."""
    seen, todo = set(), list(CALLS[package])
    while todo:
        if (called := todo.pop()) not in seen:
            seen.add(called)
            todo += CALLS[called]
    return seen


def test_no_package_calls_itself_round_a_cycle_and_vocab_calls_nothing():
    assert [package for package in PACKAGES if package in below(package)] == []
    assert below(SHARED) == set()


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_themselves_vocab_and_what_they_call(package):
    wrong = sorted(
        f"{path.relative_to(REPO)} imports {name}"
        for path in sources(package)
        for name in imports_of(path) & set(PACKAGES)
        if name not in allowed(package)
    )
    assert wrong == []


def child_process_only(path: Path) -> bool:
    """A module that runs only in a child process: an entry point (`python -m`, it has a __main__
    block) that no module of the project imports, or a module only such modules import. What it loads
    never enters the hub's own processes."""
    module = ".".join(path.relative_to(REPO).with_suffix("").parts)
    importers = [p for package in PACKAGES for p in sources(package) if module in dotted_imports_of(p)]
    if not importers:
        return '__name__ == "__main__"' in path.read_text()
    return all(p != path and child_process_only(p) for p in importers)


def dotted_imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("package", ["web", "hub", "registry", "monitor", "database", "vocab"])
def test_heavy_libraries_stay_out_of_the_hub_process(package):
    heavy = sorted(
        f"{p.relative_to(REPO)} imports {n}"
        for p in sources(package)
        for n in imports_of(p) & HEAVY
        if not child_process_only(p)
    )
    assert heavy == []


def test_runners_keep_model_runtimes_inside_the_flavors():
    """Only the flavors (copied into each model's own environment) touch model runtimes."""
    heavy = sorted(
        f"{p.relative_to(REPO)} imports {n}"
        for p in sources("runners", skip="flavors")
        for n in imports_of(p) & HEAVY
    )
    assert heavy == []


def test_flavors_import_nothing_of_the_project():
    """The flavors run inside each model's own environment, where none of the hub's packages are."""
    project = sorted(
        f"{p.relative_to(REPO)} imports {n}"
        for p in (REPO / "runners" / "flavors").rglob("*.py")
        for n in imports_of(p) & set(PACKAGES)
    )
    assert project == []


# --- small pieces ---------------------------------------------------------------------------------


def project_modules() -> list[Path]:
    return sorted(p for folder in SOURCE_FOLDERS for p in (REPO / folder).rglob("*.py"))


def long_functions(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [
        f"{path.relative_to(REPO)}:{node.lineno} {node.name} has {length} lines"
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (length := node.end_lineno - node.lineno + 1) > MAX_FUNCTION_LINES
    ]


def test_no_module_has_more_than_400_lines():
    long = [
        f"{p.relative_to(REPO)} has {n} lines"
        for p in project_modules()
        if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES
    ]
    assert not long, "split these modules:\n" + "\n".join(long)


def test_no_function_outside_the_tests_has_more_than_40_lines():
    code = [p for p in project_modules() if "tests" not in p.relative_to(REPO).parts]
    long = [offender for p in code for offender in long_functions(p)]
    assert not long, "split these functions:\n" + "\n".join(long)


def test_every_test_asserts_something():
    """A test that cannot fail proves nothing: each one asserts, or expects an exception."""
    silent = [
        f"{path.relative_to(REPO)}::{node.name}"
        for path in sorted((REPO / "tests").rglob("test_*.py"))
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
        if not any(isinstance(n, ast.Assert) for n in ast.walk(node)) and "raises(" not in ast.unparse(node)
    ]
    assert silent == []
