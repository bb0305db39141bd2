"""The source's layout shows the data flow: imports go one way, down the layers written here and in
docs/ARCHITECTURE.md ("Layers and the direction of imports"). Every import counts, at module level or inside a function, absolute or relative."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

# Lowest first. A module may import its own layer's modules and any lower layer's; layers named together in one
# tuple are peers that never import each other (each sits on the layers below them).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("shirg_eval", "shirg_eval.records", "shirg_eval.run_lock", "shirg_eval.metrics", "shirg_eval.data",
     "shirg_eval.configs"),  # base: typed records, file locks, metric functions, synthetic data
    ("shirg_eval.model",),  # LaViDa on transformers parts
    ("shirg_eval.selection",),  # selectors and their registry
    ("shirg_eval.visual",),  # the visual path: views, encode, select; variants
    ("shirg_eval.pipeline", "shirg_eval.query"),  # image + question -> answer
    ("shirg_eval.training", "shirg_eval.harness", "shirg_eval.bench"),  # peers: trainer, lmms-eval model, bench
    ("shirg_eval.reference",),  # the reference model's trainer (uses the trainer's parts)
    ("shirg_eval.tasks",),  # lmms-eval tasks: text -> metrics
    ("shirg_eval.report",),  # leaderboards, sweeps
    ("shirg_eval.cli",),  # every console command's main
)


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[0] == "tasks":  # installed as shirg_eval.tasks (pyproject's package-dir)
        parts = ["shirg_eval", *parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources() -> dict[str, Path]:
    files = list((REPO / "shirg_eval").rglob("*.py")) + list((REPO / "tasks").rglob("*.py"))
    return {_module_name(p): p for p in files if "__pycache__" not in p.parts}


def _imports(module: str, path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of shirg_eval in the file, relative ones resolved."""
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import sub`` may import a submodule: count the most specific name that exists
            found += [(node.lineno, f"{target}.{alias.name}") for alias in node.names]
            found.append((node.lineno, target))
    return sorted({(line, name) for line, name in found if name == "shirg_eval" or name.startswith("shirg_eval.")})


def layer_of(module: str) -> tuple[int, str]:
    """(rank, group) of a module: the longest layer prefix that names it."""
    best: tuple[int, str, int] | None = None
    for rank, group in enumerate(LAYERS):
        for prefix in group:
            if (module == prefix or module.startswith(prefix + ".")) and (best is None or len(prefix) > best[2]):
                best = (rank, prefix, len(prefix))
    if best is None:
        raise AssertionError(f"{module} is in no layer of tests/test_layout.py: add it there and to ARCHITECTURE.md")
    return best[0], best[1]


def violations(sources: dict[str, Path] | None = None, root: Path = REPO) -> list[tuple[str, str, str]]:
    """(importer, imported, where) for every import against the layer order."""
    sources = _sources() if sources is None else sources
    known = set(sources)
    bad = []
    for module, path in sorted(sources.items()):
        rank, group = layer_of(module)
        targets = set()
        for line, target in _imports(module, path):
            while target not in known and "." in target:  # an attribute (``from x import name``): its module
                target = target.rsplit(".", 1)[0]
            if target in known and target != "shirg_eval":
                targets.add((line, target))
        for line, target in sorted(targets):
            t_rank, t_group = layer_of(target)
            if t_rank > rank or (t_rank == rank and t_group != group and rank != 0):
                rel = path.relative_to(root)
                bad.append((module, target, f"{rel}:{line}: {module} ({group}) imports {target} ({t_group})"))
    return bad


def test_imports_go_down_the_layers():
    found = [where for _, _, where in violations()]
    assert not found, "imports against the layer order (tests/test_layout.py):\n" + "\n".join(found)


def test_the_check_sees_function_level_and_relative_imports(tmp_path):
    """The check itself: a function-level relative import up the layers, and a peer import, are both caught."""
    model = tmp_path / "shirg_eval" / "model" / "thing.py"
    model.parent.mkdir(parents=True)
    model.write_text("def f():\n    from ..report import results\n")
    harness = tmp_path / "shirg_eval" / "harness" / "x.py"
    harness.parent.mkdir(parents=True)
    harness.write_text("import shirg_eval.training.loss\n")
    sources = {"shirg_eval.model.thing": model, "shirg_eval.report.results": model,
               "shirg_eval.harness.x": harness, "shirg_eval.training.loss": harness}
    bad = violations(sources, root=tmp_path)
    pairs = {(module, target) for module, target, _ in bad}
    assert ("shirg_eval.model.thing", "shirg_eval.report.results") in pairs
    assert ("shirg_eval.harness.x", "shirg_eval.training.loss") in pairs


def test_every_module_has_a_layer():
    for module in _sources():
        layer_of(module)


def test_architecture_names_every_layer_in_this_order():
    """docs/ARCHITECTURE.md writes the same order: each layer's first package, in the text, lowest first."""
    text = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    order = text[text.index("## Layers and the direction of imports"):]
    names = [group[0].removeprefix("shirg_eval.") for group in LAYERS[1:]]
    places = [order.find(f"`{name}") for name in names]
    assert -1 not in places, f"ARCHITECTURE.md does not name layers {[n for n, p in zip(names, places, strict=True) if p < 0]}"
    assert places == sorted(places), f"ARCHITECTURE.md names the layers in another order than LAYERS: {names}"


def test_every_console_command_main_is_in_cli():
    """Every [project.scripts] entry is a ``main`` in shirg_eval/cli/, and every cli module is a command."""
    import tomllib

    scripts = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    outside = {name: target for name, target in scripts.items() if not target.startswith("shirg_eval.cli.")}
    assert not outside, f"console commands whose main is not in shirg_eval/cli/: {outside}"
    modules = {p.stem for p in (REPO / "shirg_eval" / "cli").glob("*.py") if p.stem != "__init__"}
    assert modules == {target.split(":")[0].rsplit(".", 1)[1] for target in scripts.values()}


@pytest.mark.parametrize("name", ["bench"])
def test_no_top_level_folder_shares_a_package_name(name):
    """The GPU kit is gpu_kit/; a top-level bench/ holds only the forwarder the workplace's instructions call."""
    top = REPO / name
    assert not top.exists() or sorted(p.name for p in top.iterdir()) == ["gpu_check.sh"]
