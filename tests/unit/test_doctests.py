"""The runnable examples in the core's docstrings hold (they are documentation, so they must).

The examples are read from the sources, not from the imported module: a compiled core keeps no
docstrings that `doctest.testmod` can find, and a doctest run that finds nothing passes. They
run against the module as imported, so against the compiled core when it is the one loaded.
"""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

from distillguard import models

SOURCES = Path(__file__).resolve().parents[2] / "models"
MODULES = sorted(m.name for m in pkgutil.iter_modules(models.__path__, "distillguard.models."))


def _docstrings(source: str) -> list[tuple[str, str, int]]:
    """(name, docstring, line) of the module, its classes and functions, nested ones included."""
    tree = ast.parse(source)
    found = []
    for node in [tree, *ast.walk(tree)]:
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            text = ast.get_docstring(node, clean=False)
            if text:
                found.append((getattr(node, "name", "<module>"), text, getattr(node, "lineno", 0)))
    return found


def _run_examples(name: str) -> doctest.TestResults:
    module = importlib.import_module(name)
    path = SOURCES / f"{name.rpartition('.')[2]}.py"
    parser = doctest.DocTestParser()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for part, text, line in dict.fromkeys(_docstrings(path.read_text())):
        test = parser.get_doctest(text, dict(vars(module)), f"{name}.{part}", str(path), line)
        if test.examples:
            runner.run(test)
    return runner.summarize(verbose=False)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = _run_examples(name)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"


def test_the_examples_are_found_and_run() -> None:
    # Every module whose source holds an example has it run: a change that hides them (a new
    # build, a renamed package) fails here instead of passing on nothing.
    for name in MODULES:
        source = (SOURCES / f"{name.rpartition('.')[2]}.py").read_text()
        if ">>> " in source:
            assert _run_examples(name).attempted > 0, f"no example of {name} was run"
