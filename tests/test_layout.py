"""The layers of docs/architecture.md, checked on the import graph of hwgpt_jax/ (read with `ast`,
top-level and nested imports alike): no import cycle between modules or between subpackages,
base/ imports nothing of hwgpt_jax, the core never imports stages/ or cli/; and no test imports
a private name of the library."""

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hwgpt_jax"
CORE = ("space", "model", "data", "measure", "surrogates", "search")
ABOVE_CORE = ("stages", "cli")

# Tolerated violations (none today): the exact text the check reports, mapped to the reason.
# An entry that no longer occurs fails the test, so the list can only shrink.
KNOWN_VIOLATIONS: dict[str, str] = {}

# Test files allowed to import a private name, with the reason (none today).
KNOWN_PRIVATE_IMPORTS: dict[str, str] = {}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The hwgpt_jax modules a file imports anywhere in it (`from pkg import sub` counts as
    the submodule `pkg.sub` when that is a module, else as `pkg`)."""
    name = module_name(path)
    package = name if is_package(path) else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                found.add(sub if sub in modules else base)
    return {m for m in found if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imported_modules(p, modules) for p in paths}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one member (the cycles)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return out


def subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def layer_violations(graph: dict[str, set[str]]) -> dict[str, str]:
    """{violation: detail}; the violation names the modules (or subpackages) at fault, the
    detail lists the imports that close a package cycle."""
    found = {}
    for cycle in strongly_connected(graph):
        found["module cycle: " + " <-> ".join(cycle)] = ""
    packages: dict[str, set[str]] = defaultdict(set)
    for module, targets in graph.items():
        for target in targets:
            if subpackage(module) and subpackage(target) and subpackage(module) != subpackage(
                    target):
                packages[subpackage(module)].add(subpackage(target))
    for cycle in strongly_connected(packages):
        edges = sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                       if subpackage(m) in cycle and subpackage(t) in cycle
                       and subpackage(m) != subpackage(t))
        found["package cycle: " + " <-> ".join(cycle)] = " (imports: " + "; ".join(edges) + ")"
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            if subpackage(module) == "base" and subpackage(target) != "base":
                found[f"base imports hwgpt_jax: {module} -> {target}"] = ""
            if subpackage(module) in CORE and subpackage(target) in ABOVE_CORE:
                found[f"core imports {subpackage(target)}/: {module} -> {target}"] = ""
    return found


def check_against_allowlist(found: dict[str, str], known: dict[str, str], what: str) -> None:
    new = [v + detail for v, detail in found.items() if v not in known]
    stale = [v for v in known if v not in found]
    assert not new, f"{what}:\n" + "\n".join(new)
    assert not stale, f"allowlisted {what} no longer occur (remove them):\n" + "\n".join(stale)


def test_import_graph_follows_the_layers():
    graph = import_graph()
    assert "hwgpt_jax.space.arch" in graph["hwgpt_jax.search.base"]  # the reader sees imports
    check_against_allowlist(layer_violations(graph), KNOWN_VIOLATIONS, "layer violations")


def test_layer_check_names_cycles_and_imports_back_up():
    graph = {"hwgpt_jax.base.files": {"hwgpt_jax.space.arch"},
             "hwgpt_jax.space.arch": {"hwgpt_jax.stages.run"},
             "hwgpt_jax.stages.run": {"hwgpt_jax.space.arch"}}
    found = layer_violations(graph)
    assert "module cycle: hwgpt_jax.space.arch <-> hwgpt_jax.stages.run" in found
    assert any(v.startswith("package cycle: space <-> stages") for v in found)
    assert "base imports hwgpt_jax: hwgpt_jax.base.files -> hwgpt_jax.space.arch" in found
    assert "core imports stages/: hwgpt_jax.space.arch -> hwgpt_jax.stages.run" in found
    assert layer_violations({"hwgpt_jax.stages.run": {"hwgpt_jax.space.arch"}}) == {}


def private_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hwgpt_jax"):
            found += [f"{path.name}: from {node.module} import {alias.name}"
                      for alias in node.names
                      if alias.name.startswith("_") and not alias.name.startswith("__")]
    return found


def test_no_test_imports_a_private_name():
    offenders = {}
    for path in sorted((ROOT / "tests").glob("*.py")):
        if found := private_imports(path):
            offenders[path.name] = found
    new = [line for name, lines in offenders.items() if name not in KNOWN_PRIVATE_IMPORTS
           for line in lines]
    stale = [name for name in KNOWN_PRIVATE_IMPORTS if name not in offenders]
    assert not new, "tests import private names:\n" + "\n".join(new)
    assert not stale, f"allowlisted test files import no private name any more: {stale}"
