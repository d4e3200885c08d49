"""The project's imports read from its source: which modules each module may load, at module
level or inside a function, but not under ``if TYPE_CHECKING:`` (those never run).

What the rules on imports are checked with: dvc.yaml's deps against a stage's import
closure, arrows pointing down the layers, no import circles.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Iterator
from pathlib import Path

from kernel.paths import PROJECT_ROOT

# folders at the root that hold no code of the project's own, though Python may find some
NOT_PROJECT_CODE = frozenset({"tests", "mlartifacts", "node_modules", "data", "models"})


def project_packages(root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """The project's top-level packages: the root's folders with an ``__init__.py``."""
    return tuple(
        sorted(
            path.parent.name
            for path in root.glob("*/__init__.py")
            if path.parent.name not in NOT_PROJECT_CODE and not path.parent.name.startswith(".")
        )
    )


def module_file(name: str, root: Path, packages: Iterable[str]) -> Path | None:
    """The file of a project module or package, or None for anything else."""
    if name.split(".")[0] not in set(packages):
        return None
    base = root.joinpath(*name.split("."))
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and (
        (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
        or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")
    )


def _nodes_that_run(tree: ast.AST, type_checking: bool = False) -> Iterator[ast.AST]:
    """Every node of ``tree`` outside ``if TYPE_CHECKING:`` blocks (their ``else`` runs);
    with ``type_checking``, the nodes inside them too."""
    pending = [tree]
    while pending:
        node = pending.pop()
        if not type_checking and _is_type_checking_block(node):
            pending.extend(node.orelse)
            continue
        yield node
        pending.extend(ast.iter_child_nodes(node))


def imported_names(tree: ast.AST, package: str = "") -> set[str]:
    """Every module name an import statement in ``tree`` may load, outside TYPE_CHECKING.

    ``package`` is the dotted package the file belongs to, for relative imports."""
    names: set[str] = set()
    for node in _nodes_that_run(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            if module:
                names.add(module)
                # ``from package import module`` loads the submodule
                names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def _absolute(node: ast.ImportFrom, package: str) -> str | None:
    if node.level == 0:
        return node.module
    parts = package.split(".") if package else []
    if node.level - 1 > len(parts):
        return None
    base = parts[: len(parts) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])]) or None


def import_closure(module: str, root: Path, packages: Iterable[str]) -> set[Path]:
    """The project files that running ``python -m <module>`` may execute."""
    packages = tuple(packages)
    seen: set[Path] = set()
    pending = [module]
    while pending:
        name = pending.pop()
        parts = name.split(".")
        # importing a.b.c runs a/__init__.py and a/b/__init__.py first
        for depth in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:depth]), root, packages)
            if path is None or path in seen:
                continue
            seen.add(path)
            pending.extend(imported_names(ast.parse(path.read_text(encoding="utf-8"))))
    return seen


def module_name(path: Path, root: Path) -> str:
    """``a/b/c.py`` is ``a.b.c``; ``a/b/__init__.py`` is ``a.b``."""
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = PROJECT_ROOT) -> dict[str, Path]:
    """Every module of the project's packages, by its dotted name."""
    return {
        module_name(path, root): path
        for package in project_packages(root)
        for path in sorted((root / package).rglob("*.py"))
        if not {"node_modules", "__pycache__"} & set(path.parts)
    }


def import_graph(root: Path = PROJECT_ROOT) -> dict[str, set[str]]:
    """Each project module and the project modules it imports: ``from a.b import f`` imports
    ``a.b``, ``from a import b`` imports ``a.b`` when that is a module, ``import a.b`` ``a.b``.

    Imports for type checking count: a module that names another's types depends on it as
    much as one that calls it, though Python never runs them."""
    modules = project_modules(root)
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        targets = (_deepest_module(imported, modules) for imported in _imports(tree, package))
        graph[name] = {target for target in targets if target} - {name}
    return graph


def _imports(tree: ast.AST, package: str) -> Iterator[str]:
    """Per import statement, the most specific names it may load."""
    for node in _nodes_that_run(tree, type_checking=True):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = _absolute(node, package)
            if module:
                yield from (f"{module}.{alias.name}" for alias in node.names)


def _deepest_module(name: str, modules: dict[str, Path]) -> str | None:
    parts = name.split(".")
    for depth in range(len(parts), 0, -1):
        if ".".join(parts[:depth]) in modules:
            return ".".join(parts[:depth])
    return None


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The groups of modules that import each other round a circle, each sorted (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                circles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(circles)


def sys_path_edits(tree: ast.AST) -> list[int]:
    """Lines that change ``sys.path``: a call of one of its methods, or an assignment to it."""
    lines = []
    for node in _nodes_that_run(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if _is_sys_path(node.func.value):
                lines.append(node.lineno)
        elif isinstance(node, ast.Assign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                inner = target.value if isinstance(target, ast.Subscript) else target
                if _is_sys_path(inner):
                    lines.append(node.lineno)
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            if any(alias.name == "path" for alias in node.names):
                lines.append(node.lineno)
    return sorted(lines)


def _is_sys_path(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def upward_imports(graph: dict[str, set[str]], layers: dict[str, int]) -> list[str]:
    """Each import from a package to one in a higher layer, and each package with no layer."""
    found = []
    for module, targets in sorted(graph.items()):
        level = layers.get(module.split(".")[0])
        if level is None:
            found.append(f"{module}: its package has no layer")
            continue
        found += [
            f"{module} -> {target}"
            for target in sorted(targets)
            if layers.get(target.split(".")[0], level) > level
        ]
    return found


def imports_of_test_code(root: Path = PROJECT_ROOT) -> list[str]:
    """Each import of the tests' code (``tests``, ``factories``) from a project module."""
    return [
        f"{name}: {imported}"
        for name, path in project_modules(root).items()
        for imported in sorted(_modules_named(path))
        if imported.split(".")[0] in ("tests", "factories")
    ]


def _modules_named(path: Path) -> set[str]:
    """The modules a file's import statements name, type-only ones included."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        alias.name if isinstance(node, ast.Import) else str(node.module)
        for node in _nodes_that_run(tree, type_checking=True)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }


def sys_path_edits_in(root: Path = PROJECT_ROOT) -> list[str]:
    """``module:line`` of each change to ``sys.path`` in the project's modules."""
    return [
        f"{name}:{line}"
        for name, path in project_modules(root).items()
        for line in sys_path_edits(ast.parse(path.read_text(encoding="utf-8")))
    ]


def write_tree(root: Path, files: dict[str, str]) -> Path:
    """A tiny project of source files under ``root``, for the checkers' own tests."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
