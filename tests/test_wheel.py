"""The wheel, installed on its own, works outside the repository: it holds the one ``egakit``
namespace and the configs, and from a folder with no ``configs/`` the ``ega`` script makes a
world, trains a tiny phase from the packaged config, starts the demo and exports the configs.

The wheel goes into a fresh venv (``pip install --no-deps``, no access to the checkout); torch,
lightning and the rest come from this test's own environment through a ``.pth`` line, so nothing
is downloaded, and a file missing from the wheel fails here instead of being found in the
checkout (which ``--system-site-packages`` on an editable install would hide).
"""
from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
#: What the wheel is built from: the pyproject and the folders it maps into ``egakit``.
SOURCES = ("pyproject.toml", "README.md", "egakit", "kernels", "lit_modules", "datamodules", "perf", "configs")
#: Top-level folders of the checkout that install under ``egakit`` and must not appear alone.
MAPPED_FOLDERS = ("kernels", "perf", "lit_modules", "datamodules")
#: Configs the README's commands name.
SHIPPED_CONFIGS = ("v1/pretrain.yaml", "v1/model/small.yaml", "v1/ablations/no_gcf.yaml", "v1/tiny/pretrain.yaml",
                   "eval/v1.yaml", "demo/small/pretrain.yaml", "baselines/small/mca/din.yaml")
TIMEOUT_S = 600


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel built from a copy of the sources (the checkout gets no build/ or egg-info)."""
    source = tmp_path_factory.mktemp("wheel_src")
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(path, source / name)
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(out), str(source)],
         cwd=source, env=dict(os.environ))
    (built,) = out.glob("egakit-*.whl")
    return built


def test_the_wheel_holds_one_namespace_and_the_configs(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert not tops & set(MAPPED_FOLDERS), f"top-level folders in the wheel: {sorted(tops)}"
    assert {"egakit/kernels/__init__.py", "egakit/lit/__init__.py", "egakit/data/__init__.py"} <= set(names)
    for config in SHIPPED_CONFIGS:
        assert f"egakit/configs/{config}" in names


@pytest.mark.slow  # 60-90 s with the wheel build on 2 shared cores: a venv, an install, a world and a fit in subprocesses
def test_the_installed_wheel_runs_outside_the_repository(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    purelib = Path(_run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=tmp_path, env={**os.environ}).strip())
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_NO_INDEX"] = "1"
    _run([str(python), "-m", "pip", "install", "--no-deps", "-q", str(wheel)], cwd=tmp_path, env=env)
    # torch, lightning, ...: this environment's packages, after the wheel's (a .pth line adds a
    # folder to sys.path without running that folder's own .pth files, e.g. an editable egakit).
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    (purelib / "zz_test_environment.pth").write_text("\n".join(sorted(ours)) + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    ega = str(env_dir / "bin" / "ega")
    where = _run([str(python), "-c", "import egakit, egakit.configs; print(egakit.__file__)"], cwd=work, env=env)
    assert where.strip().startswith(str(purelib)), f"egakit imported from {where.strip()}, not the wheel"
    _run([ega, "world", "--preset", "tiny", "--out", "W", "--quiet"], cwd=work, env=env)
    assert not (work / "configs").exists()
    _run([ega, "fit", "-c", "configs/v1/tiny/pretrain.yaml", "--data.init_args.world_dir=W",
          "--trainer.max_steps=2", "--trainer.limit_val_batches=0"], cwd=work, env=env)
    assert (work / "runs" / "tiny" / "ckpt" / "pretrain" / "last.ckpt").is_file()
    # the demo reads its eval config (the world's location) from the packaged configs too
    _run([ega, "demo", "--preset", "tiny", "--world-only", "--runs", "demo_runs"], cwd=work, env=env)
    assert (work / "demo_runs" / "worlds" / "tiny" / "world.json").is_file()
    _run([ega, "configs", "export", "exported"], cwd=work, env=env)
    assert (work / "exported" / "v1" / "model" / "tiny.yaml").is_file()
