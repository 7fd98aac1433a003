"""egakit.v2 sits at the model layer: it imports torch and itself, nothing of egakit above."""
import ast
from pathlib import Path

import egakit.v2

#: egakit packages egakit.v2 may import (the model layer and below, and itself).
ALLOWED_EGAKIT = ("egakit.v2", "egakit.model", "egakit.kernels")
ALLOWED_THIRD_PARTY = {"torch", "numpy", "tqdm"}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_v2_imports_nothing_above_the_model_layer():
    import sys

    stdlib = set(sys.stdlib_module_names)
    package = Path(egakit.v2.__file__).parent
    for source in sorted(package.glob("*.py")):
        for name in imported_modules(source):
            top = name.split(".")[0]
            if top == "egakit":
                assert name.startswith(ALLOWED_EGAKIT), f"{source.name} imports {name}"
            else:
                assert top in stdlib or top in ALLOWED_THIRD_PARTY or top == "__future__", f"{source.name} imports {name}"
