"""The YAML configs shipped inside egakit (the repository's ``configs/`` folder, installed as the
package data of ``egakit.configs``) and how a config path is resolved.

A config path given to ``ega`` (``-c configs/v1/pretrain.yaml``) names the local file when it
exists; otherwise the same path below ``configs/`` is looked up among the packaged configs, so
the commands of the README work from any directory after ``pip install egakit``. A path that is
neither is an error that names both places it looked. ``ega configs export DIR`` copies the
packaged configs out for editing; ``ega configs list`` lists them.
"""
from __future__ import annotations

import argparse
import shutil
import sys
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Iterator, Optional, Sequence

#: The package whose data the configs are (pyproject: package-dir ``egakit.configs = configs``).
CONFIG_PACKAGE = "egakit.configs"
#: The folder name the README's config paths start with.
CONFIG_FOLDER = "configs"
CONFIG_SUFFIXES = (".yaml", ".yml")
#: The LightningCLI options whose value is a config file.
CONFIG_OPTIONS = ("-c", "--config")


class ConfigNotFoundError(FileNotFoundError):
    """A config path that is neither a local file nor a packaged config."""


def packaged_root() -> Traversable:
    """The folder of the packaged configs (``configs/`` of the repository in an editable install)."""
    return resources.files(CONFIG_PACKAGE)


def _walk(folder: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        name = f"{prefix}{entry.name}"
        if entry.is_dir():
            yield from _walk(entry, name + "/")
        elif entry.name.endswith(CONFIG_SUFFIXES):
            yield name, entry


def packaged_configs() -> list[str]:
    """Every packaged config, as its path below ``configs/`` (``v1/pretrain.yaml``, ...)."""
    return [name for name, _ in _walk(packaged_root())]


def _relative_to_config_folder(path: str) -> str:
    """``path`` below its last ``configs/`` component (the whole path when it has none)."""
    parts = Path(path).parts
    if CONFIG_FOLDER in parts:
        index = len(parts) - 1 - parts[::-1].index(CONFIG_FOLDER)
        parts = parts[index + 1:]
    return "/".join(parts)


def packaged_config(path: str | Path) -> Optional[Path]:
    """The packaged copy of ``path`` (``configs/v1/pretrain.yaml`` or ``v1/pretrain.yaml``) as a
    file on disk, or None when egakit ships no such config."""
    relative = _relative_to_config_folder(str(path))
    if not relative:
        return None
    entry = packaged_root().joinpath(*relative.split("/"))
    if not entry.is_file():
        return None
    return Path(str(entry))  # an installed package is a folder on disk: the path is the file


def resolve_config(path: str | Path) -> Path:
    """The config file ``path`` names: the local file when it exists (it always wins), else the
    packaged one. Raises :class:`ConfigNotFoundError` naming both places otherwise."""
    local = Path(path)
    if local.is_file():
        return local
    packaged = packaged_config(path)
    if packaged is not None:
        return packaged
    relative = _relative_to_config_folder(str(path))
    raise ConfigNotFoundError(
        f"config {str(path)!r} not found: no local file {local.resolve()} and no packaged config "
        f"{CONFIG_FOLDER}/{relative} (`ega configs list` lists those)"
    )


def resolve_config_args(args: Sequence[str]) -> list[str]:
    """``args`` of a LightningCLI command with each ``-c``/``--config`` file resolved
    (:func:`resolve_config`); everything else is passed through."""
    out: list[str] = []
    expect_path = False
    for arg in args:
        if expect_path:
            out.append(str(resolve_config(arg)))
            expect_path = False
            continue
        option, sep, value = arg.partition("=")
        if option in CONFIG_OPTIONS and sep:
            out.append(f"{option}={resolve_config(value)}")
        else:
            out.append(arg)
            expect_path = arg in CONFIG_OPTIONS
    return out


def export_configs(destination: str | Path, force: bool = False) -> list[Path]:
    """Copy every packaged config under ``destination`` (keeping the layout below ``configs/``);
    returns the files written. Refuses (FileExistsError, naming them) to replace existing files
    unless ``force``."""
    destination = Path(destination)
    sources = list(_walk(packaged_root()))
    clashes = [destination / name for name, _ in sources if (destination / name).exists()]
    if clashes and not force:
        shown = ", ".join(str(p) for p in clashes[:3]) + (f" and {len(clashes) - 3} more" if len(clashes) > 3 else "")
        raise FileExistsError(f"{shown} already exist: pass --force to overwrite them")
    written = []
    for name, entry in sources:
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with resources.as_file(entry) as source:
            shutil.copyfile(source, target)
        written.append(target)
    return written


def cmd_configs(argv: Sequence[str]) -> int:
    """``ega configs list`` | ``ega configs export DIR [--force]``."""
    parser = argparse.ArgumentParser(prog="ega configs", description="The configs packaged with egakit.")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="list the packaged configs (paths below configs/)")
    export = commands.add_parser("export", help="copy the packaged configs into DIR for editing")
    export.add_argument("dir", help="destination folder (e.g. configs)")
    export.add_argument("--force", action="store_true", help="overwrite files that exist")
    args = parser.parse_args(list(argv))
    if args.command == "list":
        print(f"# packaged in {packaged_root()}")
        for name in packaged_configs():
            print(f"{CONFIG_FOLDER}/{name}")
        return 0
    try:
        written = export_configs(args.dir, force=args.force)
    except FileExistsError as err:
        print(f"ega configs export: {err}", file=sys.stderr)
        return 2
    print(f"{len(written)} configs written under {args.dir}")
    return 0
