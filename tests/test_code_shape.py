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


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, relative imports spelled from the package (`.speed` -> 'speed')."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = (node.module or "").lstrip(".")
            names.update({module} if module else {alias.name for alias in node.names})
    return names


def test_the_model_is_plain_gpt2_and_imports_no_speed_trick():
    imported = imported_modules(SOURCE / "model.py")
    assert not {name for name in imported if name.split(".")[0] in ("speed", "tinyllm.speed")}, imported
    assert 'nn.GELU(approximate="tanh")' in (SOURCE / "model.py").read_text(encoding="utf-8")


CPU_TRICKS = ("onednn", "cpu_matmul", "muon_dtype", "ns_dtype", "mallopt", "SigmoidGELU", "keep_freed_memory")
TASK_NAMES = ('"shakespeare"', '"addition"', '"sort"', '"modadd"', "addition_problems", "task.name ==")


def test_training_config_and_runs_name_no_cpu_trick():
    for name in ("training.py", "config.py", "runs.py"):
        text = (SOURCE / name).read_text(encoding="utf-8").lower()
        assert not [trick for trick in CPU_TRICKS if trick.lower() in text], name


def test_the_web_package_names_no_cpu_trick_and_no_task():
    for path in sorted((SOURCE / "web").rglob("*")):
        if path.suffix in (".py", ".js", ".html"):
            text = path.read_text(encoding="utf-8")
            assert not [word for word in CPU_TRICKS + TASK_NAMES if word in text], path.name
