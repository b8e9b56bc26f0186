"""The layering of docs/architecture.md, checked on the code: no import goes from a lower layer to a higher one."""

from __future__ import annotations

import ast
from pathlib import Path

import spatialgen

ROOT = Path(spatialgen.__file__).parent

#: Lowest first. A module may import its own layer and any lower one, never a higher one.
LAYERS: list[set[str]] = [
    {
        "spatialgen",
        "fileio",
        "logs",
        "devices",
        "image_grid",
        "relations",
        "intrinsics",
        "training_harness",
        "shard_jobs",
        "tar_records",
        "image_files",
        "hub",
    },
    {"triplets", "intrinsic_files", "intrinsic_shards", "output_layouts", "scenes", "tore"},
    {"models", "eval"},
    {"guidance"},
    {"ildm", "ilora", "esplora", "curate", "extraction"},
    {"generators"},
    {"generate", "generation_run", "bias", "paper_eval"},
    {"cli", "__main__", "demo"},
]
LAYER = {name: level for level, names in enumerate(LAYERS) for name in names}


def _top(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def import_edges() -> set[tuple[str, str, str]]:
    """(importing top-level module, imported top-level module, file) for every import of our own code."""
    edges = set()
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if parts[-1] == "__init__" else module.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets = []
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    targets.append(".".join(base + ([node.module] if node.module else [])))
                else:
                    targets.append(node.module or "")
            elif isinstance(node, ast.Import):
                targets.extend(alias.name for alias in node.names)
            for target in targets:
                if target == "spatialgen" or target.startswith("spatialgen."):
                    edges.add((_top(module), _top(target), str(path.relative_to(ROOT))))
    return edges


def test_every_module_has_a_layer() -> None:
    names = {p.relative_to(ROOT).parts[0].removesuffix(".py") for p in ROOT.rglob("*.py")} - {"__init__"}
    assert names - set(LAYER) == set(), "place new top-level modules in a layer (here and in docs/architecture.md)"


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted(f"{file}: {a} -> {b}" for a, b, file in import_edges() if LAYER[b] > LAYER[a])
    assert upward == []


def test_the_check_sees_real_imports() -> None:
    edges = {(a, b) for a, b, _ in import_edges()}
    assert ("generate", "generators") in edges and ("ildm", "guidance") in edges and ("eval", "scenes") in edges
