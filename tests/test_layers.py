"""The layer contract (``[tool.importlinter]`` in pyproject.toml, DESIGN.md "Layers"): it holds,
and it covers every module of the package, so a new module cannot sit outside it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def contract_layers() -> list[str]:
    """Every module named in the layers contract."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c["layers"] for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in layers for name in layer.split(":")]


def package_modules() -> list[str]:
    """Dotted names of every module under echoseek/ (a package by its ``__init__``)."""
    names = []
    for path in sorted((ROOT / "echoseek").rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def covered(module: str, layers: list[str], modules: list[str]) -> bool:
    """In a layer itself, inside a listed package, or a package whose modules all are."""
    if any(module == name or module.startswith(name + ".") for name in layers):
        return True
    children = [m for m in modules if m.startswith(module + ".")]
    return bool(children) and all(covered(c, layers, modules) for c in children)


def test_every_module_sits_in_a_layer() -> None:
    layers, modules = contract_layers(), package_modules()
    outside = [m for m in modules if m != "echoseek" and not covered(m, layers, modules)]
    assert outside == [], f"modules outside the layer contract: {outside}"


def test_imports_point_down_the_layers() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run(
        [str(lint), "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken." in done.stdout


# The only modules imported inside functions, and why: each costs seconds at import (measured
# on the 2-core box with torch loaded) and only some commands need it.
HEAVY = {
    "ray": "0.8 s; plain-process helpers, the CLI's errors and the service without Ray skip it",
    "mlflow": "2.1 s; only runs that log or resolve a model pay for it",
    "matplotlib": "0.6 s; only figures",
    "scipy": "1.1 s; only the sweep's analysis and the report's statistics",
    "torchvision": "2.9 s; only the ImageNet-size backbones",
    "pandas": "0.8 s; only vectors handed over as a DataFrame",
    "torch": "about 450 MB resident per process; index build tasks and searchers that "
    "re-rank by cosine or sqeuclidean (numpy) never load it (the re-rank by another distance)",
    "echoseek.distances": "torch's own module, for the same reason as torch",
}


def function_local_imports() -> list[tuple[str, int, str]]:
    """(file, line, module) of every import inside a function under echoseek/."""
    found = []
    for path in sorted((ROOT / "echoseek").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for fn in ast.walk(tree):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom):
                    names = ["." * node.level + (node.module or "")]
                else:
                    continue
                rel = str(path.relative_to(ROOT))
                found += [(rel, node.lineno, name) for name in names]
    return found


def test_function_local_imports_are_heavy_third_party_modules_only() -> None:
    found = function_local_imports()
    allowed = [(f, n, m) for f, n, m in found if m in HEAVY or m.split(".")[0] in HEAVY]
    others = [f"{f}:{n} imports {m}" for f, n, m in found if (f, n, m) not in allowed]
    assert others == [], "import these at the top of the module:\n" + "\n".join(others)
