"""The project's import graph (tests and migrations aside): no module imports one that imports
it back, directly or through others, and no module reaches into another's private names.

Imports inside functions count: they hide a cycle from Python's loader, not from a reader,
and the layering rule (lower layers never import the services above them) is about both."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SKIPPED_PARTS = {"tests", "migrations", "__pycache__"}


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    """Every module of every top-level package of the project, by dotted name."""
    modules = {}
    for package in sorted(path.parent for path in root.glob("*/__init__.py")):
        if package.name in SKIPPED_PARTS or package.name.startswith("."):
            continue
        for path in package.rglob("*.py"):
            relative = path.relative_to(root)
            if SKIPPED_PARTS & set(relative.parts):
                continue
            name = ".".join(relative.with_suffix("").parts)
            modules[name.removesuffix(".__init__")] = path
    return modules


def imported_names(module: str, path: Path, modules: dict[str, Path]):
    """(imported project module, name or None) for every import statement in the file."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = module.split(".")[: None if is_package else -1]
                parts = parts[: len(parts) - (node.level - 1)]
                base = ".".join([*parts, base] if base else parts)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                yield (submodule, None) if submodule in modules else (base, alias.name)


def owning_module(name: str, modules: dict[str, Path]) -> str | None:
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph(modules: dict[str, Path]) -> tuple[dict[str, set[str]], list[str]]:
    """The edges between project modules, and every import of another module's private name."""
    edges: dict[str, set[str]] = {name: set() for name in modules}
    private = []
    for module, path in modules.items():
        for target, name in imported_names(module, path, modules):
            owner = owning_module(target, modules)
            if owner is None or owner == module:
                continue
            edges[module].add(owner)
            if name and name.startswith("_") and not name.startswith("__"):
                private.append(f"{module} imports {name} from {target}")
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm,
    iterative so that depth is no concern)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found = []
    for start in sorted(edges):
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_one_that_imports_it_back():
    edges, _ = import_graph(project_modules())
    found = cycles(edges)
    described = ["\n".join(f"  {module} -> {sorted(edges[module] & set(component))}"
                           for module in component) for component in found]
    assert not found, "import cycles:\n" + "\n".join(described)


def test_no_module_imports_another_modules_private_names():
    _, private = import_graph(project_modules())
    assert not private, "\n".join(private)


# The checker itself, on a small made-up project: it must see what it is there to see.

def write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_a_cycle_hidden_in_a_function(tmp_path):
    write(tmp_path, {
        "shop/__init__.py": "",
        "shop/orders.py": "from shop.billing import charge\n",
        "shop/billing.py": "def charge():\n    from shop import orders\n",
        "shop/tests/test_x.py": "from shop.orders import charge\n",
        "shop/migrations/0001.py": "from shop import billing\n",
    })
    edges, _ = import_graph(project_modules(tmp_path))
    assert cycles(edges) == [["shop.billing", "shop.orders"]]


def test_the_checker_finds_a_private_name_and_a_relative_import(tmp_path):
    write(tmp_path, {
        "shop/__init__.py": "",
        "shop/orders.py": "from .billing import _secret\nfrom . import billing\n",
        "shop/billing.py": "_secret = 1\n",
        "shop/stock.py": "import shop.billing\n",
    })
    edges, private = import_graph(project_modules(tmp_path))
    assert private == ["shop.orders imports _secret from shop.billing"]
    assert edges["shop.orders"] == {"shop.billing"} and edges["shop.stock"] == {"shop.billing"}
    assert cycles(edges) == []
