"""The layer contract (``[tool.importlinter]`` in pyproject.toml, DESIGN.md "Layers"): it holds,
and it covers every module of the package, so a new module cannot sit outside it."""

from __future__ import annotations

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
