"""The apps' dependencies run one way (README, "Architecture"): each layer imports only those below it,
at the top of its modules, never inside a function to dodge a cycle."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = ["core", "accounts", "billing", "usage", "backoffice"]  # bottom to top
SETS_UP_DJANGO = {"backoffice/run.py"}  # imports models once it has set Django up: no cycle to dodge


def modules(package: str):
    for path in (ROOT / package).rglob("*.py"):
        if not {"tests", "migrations"} & set(path.relative_to(ROOT).parts):
            yield path, ast.parse(path.read_text())


def imported(node: ast.AST) -> list[str]:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return [node.module.split(".")[0]]
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    return []


@pytest.mark.parametrize("package", LAYERS)
def test_a_layer_imports_only_the_layers_below_it(package):
    above = set(LAYERS[LAYERS.index(package) + 1 :])
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
        for path, tree in modules(package)
        for node in ast.walk(tree)
        for name in imported(node)
        if name in above
    ]
    assert not wrong


@pytest.mark.parametrize("package", LAYERS)
def test_no_import_of_ours_hides_inside_a_function(package):
    hidden = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {name}"
        for path, tree in modules(package)
        if str(path.relative_to(ROOT)) not in SETS_UP_DJANGO
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef)
        for node in ast.walk(function)
        for name in imported(node)
        if name in LAYERS
    ]
    assert not hidden


def test_tests_share_helpers_through_helper_modules_not_conftest_or_other_tests():
    """Fixtures stay in conftest.py, found by pytest; what tests import lives in a helpers module."""
    wrong = [
        f"{path.relative_to(ROOT)}:{node.lineno} imports {node.module}"
        for folder in [ROOT / "tests", *(ROOT / package / "tests" for package in LAYERS)]
        for path in folder.rglob("*.py")
        if "node_modules" not in path.parts
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom)
        and node.module
        and (node.module.split(".")[-1].startswith("test_") or node.module.split(".")[-1] == "conftest")
    ]
    assert not wrong
