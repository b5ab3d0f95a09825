"""The code stays something a learner reads top to bottom: short functions, classes and modules."""

import ast
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[1] / "src" / "tinyllm"
LIMITS = {"function": 90, "class": 220, "module": 420}


def lengths():
    for path in sorted(SOURCE.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        yield "module", str(path.relative_to(SOURCE)), len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                kind = "class" if isinstance(node, ast.ClassDef) else "function"
                yield kind, f"{path.relative_to(SOURCE)}:{node.name}", node.end_lineno - node.lineno + 1


def test_no_function_class_or_module_is_too_long():
    too_long = [f"{name} ({kind}, {n} lines)" for kind, name, n in lengths() if n > LIMITS[kind]]
    assert not too_long, "split by concept: " + ", ".join(too_long)
