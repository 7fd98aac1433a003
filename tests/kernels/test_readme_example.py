"""The runnable example of kernels/README.md runs as printed (so the docs cannot rot); the same
block runs with triton unimportable in tests/kernels/test_torch_only.py."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "kernels" / "README.md"


def readme_example() -> str:
    """The one ```python block of kernels/README.md."""
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "kernels/README.md should hold exactly one runnable example"
    return blocks[0]


def test_readme_example_runs():
    namespace: dict = {}
    exec(compile(readme_example(), str(README), "exec"), namespace)  # its own asserts check the results
    assert namespace["idx"].shape == (2, 5)
    assert namespace["aggregate"].centroids.grad.abs().sum() > 0
