"""``gan_lightning.runtime.compat`` is the only module of the package that touches a private Lightning or torch
name: no other module imports from an internal Lightning module (``loops``, ``trainer.connectors``,
``trainer.call``, any module path with a leading underscore), imports an underscore name from Lightning or torch,
or reads an underscore attribute that the package itself does not define (``trainer._results``,
``torch._foreach_lerp_``, ...)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gan_lightning"
DOOR = PACKAGE / "runtime" / "compat.py"
FRAMEWORKS = ("lightning", "lightning_fabric", "pytorch_lightning", "torch")
INTERNAL_MODULES = ("loops", "connectors", "call")


def _own_private_names(trees: list[ast.AST]) -> set[str]:
    """Every underscore name the package defines: functions, classes, assigned names and attributes,
    arguments, and strings naming one (``__dict__["_g_wrapped"]``)."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
                names.add(node.value)
    return {name for name in names if name.startswith("_")}


def private_uses(tree: ast.AST, own: set[str]) -> list[str]:
    """What ``tree`` touches of the frameworks' private names, one description per use."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in FRAMEWORKS:
            parts = node.module.split(".")
            if any(p.startswith("_") or p in INTERNAL_MODULES for p in parts):
                found.append(f"line {node.lineno}: from {node.module} import ...")
            for alias in node.names:
                if alias.name.startswith("_") or alias.name in INTERNAL_MODULES:
                    found.append(f"line {node.lineno}: from {node.module} import {alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] in FRAMEWORKS and any(p.startswith("_") or p in INTERNAL_MODULES for p in parts):
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
              and node.attr not in own):
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return found


def test_only_compat_touches_private_framework_names():
    files = sorted(PACKAGE.rglob("*.py"))
    trees = {path: ast.parse(path.read_text(), filename=str(path)) for path in files}
    own = _own_private_names(list(trees.values()))
    problems = [f"{path.relative_to(PACKAGE.parent)} {use}" for path, tree in trees.items() if path != DOOR
                for use in private_uses(tree, own)]
    assert problems == [], "private Lightning/torch names outside runtime/compat.py:\n" + "\n".join(problems)


def test_the_scan_sees_each_kind_of_private_use():
    source = """
from lightning.pytorch.loops.training_epoch_loop import _TrainingEpochLoop
from lightning.pytorch.trainer import call
from lightning.pytorch.trainer.connectors.logger_connector.result import Metric
import torch._dynamo
results = trainer._results
torch._foreach_lerp_(a, b, 0.5)
self._own = 1
x = self._own
"""
    uses = private_uses(ast.parse(source), _own_private_names([ast.parse(source)]))
    assert any("loops" in u for u in uses)
    assert any("import _TrainingEpochLoop" in u for u in uses)
    assert any("import call" in u for u in uses)
    assert any("connectors" in u for u in uses)
    assert any("torch._dynamo" in u for u in uses)
    assert any("trainer._results" in u for u in uses)
    assert any("torch._foreach_lerp_" in u for u in uses)
    assert not any("_own" in u for u in uses)  # the package's own underscore names are its business
