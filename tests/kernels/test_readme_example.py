"""The runnable example of kernels/README.md runs as printed (so the docs cannot rot)."""
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "kernels" / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) == 1, "kernels/README.md should hold exactly one runnable example"
    namespace: dict = {}
    exec(compile(blocks[0], str(README), "exec"), namespace)  # its own asserts check the results
    assert namespace["idx"].shape == (2, 5)
    assert namespace["centroids"].grad.abs().sum() > 0
