"""The one error tree (switchboard/errors.py): a caller can catch everything of ours with SwitchboardError,
catch a family by its class, and read the tree in the module docstring and trust it.

These fail when someone adds an exception outside the tree or changes the tree without its drawing: that is
their purpose.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import switchboard
from switchboard import errors
from switchboard.errors import SwitchboardError


def _modules() -> list[str]:
    names = [
        info.name
        for info in pkgutil.walk_packages(switchboard.__path__, prefix="switchboard.")
        if not info.name.endswith(".__main__")  # importing one runs the CLI
    ]
    return ["switchboard", *names]


def _exceptions_defined_in_the_package() -> dict[str, type[BaseException]]:
    found: dict[str, type[BaseException]] = {}
    for name in _modules():
        module = importlib.import_module(name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == name:
                found[f"{name}.{value.__qualname__}"] = value
    return found


def _ours() -> list[type[SwitchboardError]]:
    return [
        value
        for value in vars(errors).values()
        if inspect.isclass(value) and issubclass(value, SwitchboardError) and value.__module__ == errors.__name__
    ]


def test_every_exception_in_the_package_is_under_switchboard_error() -> None:
    found = _exceptions_defined_in_the_package()
    assert len(found) > 30, sorted(found)  # the walk did find the package's modules
    outside = {name for name, cls in found.items() if not issubclass(cls, SwitchboardError)}
    assert outside == set()


def test_every_public_exception_is_defined_in_errors_py() -> None:
    elsewhere = {
        name
        for name, cls in _exceptions_defined_in_the_package().items()
        if cls.__module__ != errors.__name__ and not cls.__name__.startswith("_")
    }
    assert elsewhere == set()


def _drawn_parents() -> dict[str, str | None]:
    """The tree as drawn in errors.py's docstring: each name and the name it hangs from."""
    doc = errors.__doc__ or ""
    lines = doc.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip() == "SwitchboardError")
    root_column = lines[start].index("SwitchboardError")
    parents: dict[str, str | None] = {}
    path: list[str] = []
    for line in lines[start:]:
        if not line.strip():
            break
        match = re.match(r"[ │├└─]*([A-Z]\w*)", line)
        assert match is not None, f"not a line of the tree: {line!r}"
        depth, rest = divmod(match.start(1) - root_column, 4)
        assert rest == 0 and depth <= len(path), f"misaligned: {line!r}"
        del path[depth:]
        parents[match.group(1)] = path[-1] if path else None
        path.append(match.group(1))
    return parents


def _public_parent(cls: type[SwitchboardError]) -> str | None:
    for base in cls.__mro__[1:]:
        if issubclass(base, SwitchboardError) and not base.__name__.startswith("_"):
            return base.__name__
    return None


def test_the_docstring_draws_the_tree_as_it_is() -> None:
    actual = {cls.__name__: _public_parent(cls) for cls in _ours() if not cls.__name__.startswith("_")}
    assert _drawn_parents() == actual


def test_no_exception_of_ours_is_also_a_built_in_error() -> None:
    # An `except OSError` around a socket call, or an `except TimeoutError` around the caller's own
    # asyncio.timeout, must never catch one of ours by accident (errors.py's docstring says why).
    for cls in _ours():
        others = [b for b in cls.__mro__ if not issubclass(b, SwitchboardError)]
        assert others == [Exception, BaseException, object], cls


def test_errors_py_imports_nothing_of_ours() -> None:
    tree = ast.parse(Path(errors.__file__).read_text(encoding="utf-8"))
    imported = [
        node.module or "" if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    assert imported and not [name for name in imported if name.split(".")[0] == "switchboard"]


def test_every_class_of_the_tree_says_what_it_means() -> None:
    for cls in _ours():
        assert cls.__doc__ and cls.__doc__.strip(), cls
