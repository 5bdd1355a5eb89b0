"""The import direction of DESIGN.md section 8: cli/web -> hub -> registry/runners/monitor."""

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ["cli", "web", "hub", "registry", "runners", "monitor"]
ALLOWED = {
    "cli": {"cli", "web", "hub", "registry"},  # web: `aid serve` runs it; registry: check and pack a package
    "web": {"web", "hub"},
    "hub": {"hub", "registry", "runners", "monitor"},
    "registry": {"registry"},
    "runners": {"runners"},
    "monitor": {"monitor"},
}
HEAVY = {"torch", "evidently", "onnxruntime", "sklearn", "bentoml"}


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


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_only_the_layers_below(package):
    wrong = {
        f"{path.relative_to(REPO)} imports {name}"
        for path in sources(package)
        for name in imports_of(path) & set(PACKAGES)
        if name not in ALLOWED[package]
    }
    assert not wrong


@pytest.mark.parametrize("package", ["web", "hub", "registry", "monitor"])
def test_heavy_libraries_stay_out_of_the_hub_process(package):
    heavy = {f"{p.relative_to(REPO)} imports {n}" for p in sources(package) for n in imports_of(p) & HEAVY}
    assert not heavy


def test_runners_keep_model_runtimes_inside_the_flavors():
    """Only the flavors (copied into each model's own environment) touch model runtimes."""
    heavy = {
        f"{p.relative_to(REPO)} imports {n}"
        for p in sources("runners", skip="flavors")
        for n in imports_of(p) & HEAVY
    }
    assert not heavy
