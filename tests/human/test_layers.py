"""The human package rates any outputs: it imports no model code, and its core no web code."""

import ast
from pathlib import Path

HUMAN = Path(__file__).resolve().parents[2] / "src" / "tokenloom" / "human"
MODEL_SIDE = {"tokenloom.model", "tokenloom.generation", "tokenloom.eval", "tokenloom.training", "tokenloom.app",
              "tokenloom.rag", "tokenloom.tokenizer", "tokenloom.embed", "tokenloom.chat", "torch", "transformers"}
WEB = {"fastapi", "starlette", "uvicorn"}


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _offenders(paths, forbidden) -> dict:
    found = {}
    for path in paths:
        bad = {n for n in _imports(path) if any(n == f or n.startswith(f + ".") for f in forbidden)}
        if bad:
            found[str(path.relative_to(HUMAN))] = sorted(bad)
    return found


def test_human_imports_no_model_code():
    assert _offenders(HUMAN.rglob("*.py"), MODEL_SIDE) == {}


def test_only_the_web_folder_imports_the_web_framework():
    core = [p for p in HUMAN.rglob("*.py") if "web" not in p.relative_to(HUMAN).parts]
    assert _offenders(core, WEB) == {}
