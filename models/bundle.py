"""ModelBundle: spec + LightGBM model + calibrator + bands + metadata, saved in safe formats only.

On disk a bundle is a folder of text files (LightGBM's own model text and JSON), plus `manifest.json` with the
sha256 of each. Loading checks every hash first, and the manifest's own hash when the caller knows it
(the MLflow run records it), so a tampered or truncated bundle is refused before anything is parsed.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadscore.features.errors import DataError
from leadscore.features.io import write_text
from leadscore.features.spec import FeatureSpec
from leadscore.models.calibration import SigmoidCalibrator, calibrator_from_dict
from leadscore.models.learners import (
    MarginModel,
    TreeMargin,
    learner_description,
    learner_from_json,
    learner_to_json,
    tree_booster,
)

BUNDLE_FORMAT = 1
FILES = ("spec.json", "calibrator.json", "meta.json")  # always present; model.txt and learner.json by learner
LEARNER_FILES = ("model.txt", "learner.json")


class BundleError(DataError):
    """A model bundle that is missing, incomplete or fails its integrity check."""


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_feature_order(spec: FeatureSpec, booster, where: Path) -> None:
    """The spec's feature order must be the model's: a silent mismatch would score garbage."""
    import re

    def norm(name: str) -> str:  # LightGBM replaces characters it cannot keep in feature names
        return re.sub(r"[^0-9a-zA-Z_]", "_", name)

    expected = [norm(n) for n in spec.feature_names]
    actual = [norm(n) for n in booster.feature_name()]
    if expected != actual:
        raise BundleError(f"{where}: the feature spec does not match the model's features; refusing to load")


@dataclass(frozen=True)
class Bands:
    """Band names and integer score cut-offs (lower bounds of every band after the first)."""

    names: tuple[str, ...]
    cutoffs: tuple[int, ...]

    def to_dict(self) -> dict[str, list]:
        return {"names": list(self.names), "cutoffs": list(self.cutoffs)}


@dataclass
class ModelBundle:
    """Everything needed to score: the fitted model and what it was trained on."""

    spec: FeatureSpec
    model: MarginModel  # a margin model (models.learners); a bare lightgbm.Booster is wrapped
    calibrator: SigmoidCalibrator
    bands: Bands
    metrics: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not hasattr(self.model, "margin"):
            self.model = TreeMargin(self.model)

    @property
    def booster(self) -> Any | None:
        """The LightGBM booster of the learner (None for a logistic model)."""
        return tree_booster(self.model)

    @property
    def learner(self) -> str:
        """Readable name of the learner ('LightGBM', 'logistic', 'blend ...')."""
        return learner_description(self.model)

    def save(self, directory: str | os.PathLike) -> str:
        """Write the bundle folder; returns the manifest's sha256 (record it with the run)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        files = list(FILES)
        write_text(self.spec.to_json(), directory / "spec.json")
        if self.booster is not None:
            write_text(self.booster.model_to_string(), directory / "model.txt")
            files.append("model.txt")
        write_text(learner_to_json(self.model), directory / "learner.json")
        files.append("learner.json")
        write_text(json.dumps(self.calibrator.to_dict(), indent=2), directory / "calibrator.json")
        meta = {"format": BUNDLE_FORMAT, "bands": self.bands.to_dict(), "metrics": self.metrics, **self.meta}
        write_text(json.dumps(meta, indent=2, sort_keys=True, default=str), directory / "meta.json")
        manifest = {name: sha256_file(directory / name) for name in files}
        write_text(json.dumps(manifest, indent=2, sort_keys=True), directory / "manifest.json")
        return sha256_file(directory / "manifest.json")

    @classmethod
    def load(cls, directory: str | os.PathLike, expected_manifest_sha256: str | None = None) -> ModelBundle:
        """Load a bundle folder after checking the sha256 of every file against its manifest."""
        import lightgbm as lgb

        directory = Path(directory)
        manifest_path = directory / "manifest.json"
        if not manifest_path.exists():
            raise BundleError(f"{directory}: not a model bundle (no manifest.json)")
        if expected_manifest_sha256 and sha256_file(manifest_path) != expected_manifest_sha256:
            raise BundleError(f"{manifest_path}: sha256 does not match the one recorded with the run")
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = [name for name in LEARNER_FILES if name in manifest]
        if not listed:
            raise BundleError(f"{directory}: model bundle lists no model file (model.txt or learner.json)")
        for name in (*FILES, *listed):
            path = directory / name
            if not path.exists():
                raise BundleError(f"{directory}: model bundle is missing {name}")
            if sha256_file(path) != manifest.get(name):
                raise BundleError(f"{path}: sha256 does not match manifest.json; refusing to load")
        meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != BUNDLE_FORMAT:
            raise BundleError(f"{directory}: bundle format {meta.get('format')} is not supported")
        spec = FeatureSpec.from_json((directory / "spec.json").read_text(encoding="utf-8"))
        booster = None
        if "model.txt" in listed:
            booster = lgb.Booster(model_str=(directory / "model.txt").read_text(encoding="utf-8"))
            _check_feature_order(spec, booster, directory)
        learner_text = (directory / "learner.json").read_text(encoding="utf-8") if "learner.json" in listed else None
        try:
            model = learner_from_json(learner_text, spec, booster)
        except (ValueError, KeyError) as exc:
            raise BundleError(f"{directory}: cannot read the learner ({exc}); refusing to load") from exc
        calibrator = calibrator_from_dict(json.loads((directory / "calibrator.json").read_text(encoding="utf-8")))
        bands = Bands(tuple(meta["bands"]["names"]), tuple(int(c) for c in meta["bands"]["cutoffs"]))
        metrics = meta.pop("metrics", {})
        meta.pop("bands")
        return cls(spec, model, calibrator, bands, metrics, meta)
