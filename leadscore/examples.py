"""The example rule sets and training configs shipped with the package, found without a relative path.

They are package data (`leadscore.rules`, `leadscore.configs`; in the repository the top-level `rules/` and
`configs/` folders), so a notebook or script finds them from any working directory, in a checkout or after a
wheel install. `copy_examples` (the `leadscore init DIR` command) copies them out for editing.
"""

from __future__ import annotations

import os
import shutil
from importlib import resources
from pathlib import Path

from leadscore.features.errors import ConfigError

# folder name in the repository / in a copied-out directory -> the package that ships it
KINDS = {"rules": "leadscore.rules", "configs": "leadscore.configs"}
_SUFFIXES = (".yaml", ".yml", ".md")


def _folder(kind: str) -> Path:
    if kind not in KINDS:
        raise ConfigError(f"unknown example folder {kind!r}: expected one of {', '.join(KINDS)}")
    try:
        root = resources.files(KINDS[kind])
    except ModuleNotFoundError:
        # An editable install made before these packages existed: read the checkout's folder directly.
        root = Path(__file__).resolve().parents[1] / kind
    path = Path(str(root))
    if not path.is_dir():  # pragma: no cover - only a zipped install, which pip never makes
        raise ConfigError(f"the example {kind} are not on the file system ({root}); reinstall leadscore")
    return path


def example_files(kind: str) -> list[Path]:
    """The shipped files of one folder ("rules" or "configs"), sorted by name."""
    return sorted(p for p in _folder(kind).iterdir() if p.is_file() and p.suffix in _SUFFIXES)


def example_path(name: str) -> Path:
    """Path of a shipped example, named as in the repository: "rules/example.yaml", "configs/demo.yaml"."""
    kind, _, file = str(name).replace("\\", "/").partition("/")
    path = _folder(kind) / file
    if not file or "/" in file or not path.is_file():
        known = ", ".join(f"{kind}/{p.name}" for p in example_files(kind))
        raise ConfigError(f"no shipped example {name!r}; the {kind} are: {known}")
    return path


def copy_examples(directory: str | os.PathLike, *, overwrite: bool = False) -> list[Path]:
    """Copy every shipped rule set and config into `directory`/rules and `directory`/configs; returns the copies.

    Existing files are kept (and nothing is copied) unless `overwrite`, so edited copies are never lost.
    """
    directory = Path(directory)
    pairs = [(src, directory / kind / src.name) for kind in KINDS for src in example_files(kind)]
    existing = [dst for _, dst in pairs if dst.exists()]
    if existing and not overwrite:
        names = ", ".join(str(p) for p in existing[:3]) + (" ..." if len(existing) > 3 else "")
        raise ConfigError(f"{len(existing)} file(s) already exist ({names}); use --force to overwrite them")
    for src, dst in pairs:
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    return [dst for _, dst in pairs]
