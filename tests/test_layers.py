"""Dependencies point down only: a lower layer never imports a higher one."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tokenloom"

# package -> the tokenloom packages it must never import
FORBIDDEN = {
    "metrics": {"model", "generation", "eval", "training", "app", "tokenizer"},
    "model": {"generation", "eval", "training", "app", "metrics"},
    "generation": {"eval", "training", "app"},
    "eval": {"training", "app"},
    "training": {"app", "eval"},
    "rag": {"app", "training", "eval"},
}


def imported_tokenloom_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n.split(".")[1] for n in names if n.startswith("tokenloom.") and n.count(".") >= 1}


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_package_does_not_import_a_higher_layer(package):
    offenders = {}
    for path in (SRC / package).rglob("*.py"):
        bad = imported_tokenloom_packages(path) & FORBIDDEN[package]
        if bad:
            offenders[str(path.relative_to(SRC))] = sorted(bad)
    assert offenders == {}
