"""The only MLflow code: tracking store, run logging, the pyfunc model, the registry and model resolution.

Nothing here touches MLflow at import time; every function takes the tracking URI explicitly.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from leadscore.features.errors import DataError
from leadscore.features.spec import FeatureSpec
from leadscore.models.bundle import BundleError, ModelBundle

log = logging.getLogger(__name__)

MODEL_NAME = "model"
BUNDLE_ARTIFACT = "bundle"
SHA_TAG = "bundle_manifest_sha256"
CHAMPION = "champion"
CHALLENGER = "challenger"


def default_tracking_uri(workdir: str | os.PathLike = ".") -> str:
    """`MLFLOW_TRACKING_URI` if set, else a SQLite store in the working directory (nothing to start)."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{Path(workdir).resolve() / 'mlflow.db'}"


def sqlite_file(tracking_uri: str) -> Path | None:
    """The database file of a `sqlite:///` tracking URI (None for any other store)."""
    if not tracking_uri.startswith("sqlite:///"):
        return None
    return Path(tracking_uri[len("sqlite:///"):].split("?", 1)[0])


def require_existing_store(tracking_uri: str) -> None:
    """Reading a model needs a store that exists: a mistyped SQLite path would otherwise create an empty one."""
    path = sqlite_file(tracking_uri)
    if path is not None:
        if not path.is_file():
            raise DataError(f"{tracking_uri}: no tracking store at {path} (mistyped --tracking-uri? a model is read "
                            f"from the store training wrote)")
    elif tracking_uri.startswith("file:") or "://" not in tracking_uri:
        path = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
        if not path.is_dir():
            raise DataError(f"{tracking_uri}: no tracking store folder at {path}")


_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def _scoped_tracking(func):
    """Undo MLflow's process-wide tracking URI after the call.

    MLflow's fluent API needs a global tracking URI, and `mlflow.set_tracking_uri` also writes it into
    `os.environ`; without this, one call would silently redirect every later call in the same process
    (a notebook, a test session) to the last store used.
    """

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        saved = {name: os.environ.get(name) for name in _URI_VARIABLES}
        try:
            return func(*args, **kwargs)
        finally:
            if "mlflow" in sys.modules:
                import mlflow

                mlflow.set_tracking_uri(None)
                mlflow.set_registry_uri(None)
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    return wrapper


# New SQLite stores being created by another process (`prepare_store`), by database file.
_PREPARING: dict[Path, Any] = {}


def prepare_store(tracking_uri: str) -> bool:
    """Start creating a new SQLite tracking store in another Python process; True when one was started.

    Creating MLflow's tables on a new SQLite file is seconds of single-threaded migrations (and importing MLflow
    seconds more), and a training run's first minute (reading files, building features) leaves the other CPUs
    idle: a run that calls this first finds its store ready when it logs. Nothing is started for a store that
    exists, a store that is not a SQLite file, a process that has MLflow loaded already (the migrations alone
    are then cheaper here than a second MLflow) or that may use a single CPU. Every use of the store in this
    process waits for the other one (`_mlflow`); if it failed, the store is created here as before. The other
    process builds the database under a temporary name and links it into place, so a store is whole or absent.
    """
    import subprocess

    from leadscore.runtime import threads

    path = sqlite_file(tracking_uri)
    if (path is None or not sys.executable or "mlflow" in sys.modules or threads() < 2
            or not path.parent.is_dir() or path.exists()):
        return False
    key = path.resolve()
    if key in _PREPARING:
        return True
    try:
        process = subprocess.Popen([sys.executable, "-m", "leadscore.models.store_worker", str(key)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                   env={**_MLFLOW_QUIET, **os.environ})
    except OSError as exc:
        log.info("creating the tracking store here: could not start a separate process (%s)", exc)
        return False
    _PREPARING[key] = process
    return True


def _await_store(tracking_uri: str) -> None:
    """Wait for a `prepare_store` of this store, if one is under way (a warning when it failed)."""
    path = sqlite_file(tracking_uri)
    process = _PREPARING.pop(path.resolve(), None) if path is not None and _PREPARING else None
    if process is None:
        return
    _, err = process.communicate()
    if process.returncode != 0:
        lines = err.decode("utf-8", "replace").strip().splitlines()
        log.warning("creating the tracking store %s here: the separate process failed (%s)", path,
                    lines[-1] if lines else f"exit status {process.returncode}")


def create_sqlite_store(path: Path) -> bool:
    """Create a new SQLite tracking store at `path` (what `prepare_store`'s process runs); False when a store
    appeared there meanwhile (it is left as it is).

    The database is built under a temporary name beside the target and hard-linked into place only once complete,
    never over an existing file: a store appears whole or not at all.
    """
    _quiet_mlflow_logs()
    from mlflow.tracking import MlflowClient

    temporary = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        client = MlflowClient(f"sqlite:///{temporary}")
        client.search_experiments(max_results=1)  # opening the store creates and migrates its tables
        client._tracking_client.store.engine.dispose()  # every connection closed: the file is complete
        try:
            os.link(temporary, path)
        except FileExistsError:
            return False
        except OSError:  # a file system without hard links: a rename, unless a store appeared meanwhile
            if path.exists():
                return False
            os.replace(temporary, path)
        return True
    finally:
        temporary.unlink(missing_ok=True)


# Download progress bars would interleave with the CLI's own output; the project runs offline, so MLflow's usage
# telemetry would only try (and fail) to reach the network.
_MLFLOW_QUIET = {"MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


def _mlflow(tracking_uri: str):
    _await_store(tracking_uri)
    for name, value in _MLFLOW_QUIET.items():
        os.environ.setdefault(name, value)
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    mlflow.set_registry_uri(tracking_uri)
    return mlflow


def _quiet_mlflow_logs() -> None:
    # Alembic prints every migration step on a new SQLite store; keep the CLI readable.
    for name in ("alembic", "alembic.runtime.migration", "mlflow.store.db.utils",
                 "mlflow.models.flavor_backend_registry"):
        logging.getLogger(name).setLevel(logging.WARNING)


EVENTS_COLUMN = "events"  # raw-lead input: a lead's events inline, a list of {"timestamp", "type"}


def model_signature(spec: FeatureSpec):
    """Explicit pyfunc signature: a raw lead record (the id required; its attributes, events inline and as_of
    optional) or, as before, the readable feature frame; probability/score/band out.

    Lead attributes are `Any`: the model types them itself exactly as `leadscore score` does (a JSON integer in
    a number column is not refused). Inference from pandas dtypes breaks (mlflow#3849), so every column is
    declared here.
    """
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, Array, ColSpec, Object, ParamSchema, ParamSpec, Property, Schema

    inputs = [ColSpec(AnyType(), spec.id_column, required=True)]
    if spec.created_column not in spec.feature_names:
        inputs.append(ColSpec(AnyType(), spec.created_column, required=False))
    inputs.append(ColSpec(AnyType(), "as_of", required=False))
    for name in spec.lead_feature_names:
        inputs.append(ColSpec(AnyType(), name, required=False))
    if spec.has_events:
        event = Object([Property("timestamp", "string"), Property("type", "string")])
        inputs.append(ColSpec(Array(event), EVENTS_COLUMN, required=False))
        for name in spec.event_feature_names:  # the feature-frame form
            inputs.append(ColSpec("double", name, required=False))
    outputs = Schema([ColSpec("double", "probability"), ColSpec("long", "score"), ColSpec("string", "band")])
    # `as_of` for every lead of a request ("" = each lead's own as_of, else now).
    params = ParamSchema([ParamSpec("as_of", "string", "")])
    return ModelSignature(inputs=Schema(inputs), outputs=outputs, params=params)


def pyfunc_input(spec: FeatureSpec, features: pd.DataFrame, ids: pd.Series | None = None) -> pd.DataFrame:
    """A readable feature frame in the signature's plain types (object strings and float64), with the lead id."""
    out = {spec.id_column: (pd.Series(ids).astype(str).to_numpy() if ids is not None
                            else [f"row-{i}" for i in range(len(features))])}
    for name in spec.feature_names:
        col = features[name]
        if name in spec.categorical_vocab:
            out[name] = col.astype("object").where(col.notna(), None).to_numpy()
        else:
            out[name] = pd.to_numeric(col, errors="coerce").astype("float64").to_numpy()
    return pd.DataFrame(out, index=features.index)


def _package_tree(root: Path) -> Path:
    """This package's code as one importable `leadscore` folder (subpackages inside), for the model's code/."""
    import importlib

    import leadscore

    target = root / "leadscore"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(Path(leadscore.__file__).parent, target, ignore=ignore)
    for sub in ("features", "models", "training", "serve", "analytics"):
        module = importlib.import_module(f"leadscore.{sub}")
        source = Path(module.__file__).parent
        if not (target / sub).exists():
            shutil.copytree(source, target / sub, ignore=ignore)
    return target


# What loading and scoring a logged model imports, by distribution (pinned to this environment's versions).
MODEL_REQUIREMENTS = ("mlflow", "lightgbm", "pandas", "numpy", "scikit-learn", "scipy", "pyarrow", "duckdb",
                      "pyyaml")


def model_requirements() -> list[str]:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for dist in MODEL_REQUIREMENTS:
        try:
            out.append(f"{dist}=={version(dist)}")
        except PackageNotFoundError:  # pragma: no cover - every one is a dependency of this package
            out.append(dist)
    return out


@dataclass(frozen=True)
class LoggedRun:
    """Where a training run went: run id, model URIs, registered version and its alias."""

    run_id: str
    experiment_id: str
    tracking_uri: str
    model_uri: str
    registered_model: str | None
    version: str | None
    alias: str | None
    bundle_sha256: str

    @property
    def registry_uri(self) -> str | None:
        if self.registered_model and self.alias:
            return f"models:/{self.registered_model}@{self.alias}"
        return None


def _flatten(prefix: str, values: Mapping[str, Any], out: dict[str, Any]) -> dict[str, Any]:
    for key, value in values.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            _flatten(name, value, out)
        else:
            out[name] = value
    return out


def _experiment_id(mlflow, name: str, artifact_root: Path | None) -> str:
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = artifact_root.resolve().as_uri() if artifact_root is not None else None
    return mlflow.create_experiment(name, artifact_location=location)


@dataclass(frozen=True)
class RunInput:
    """A table a run read, logged with `mlflow.log_input` under its name with a digest of its whole content."""

    name: str
    frame: pd.DataFrame
    context: str  # "source" (a table as read), "training", "calibration", "test", "evaluation"
    source: str | None = None  # the file it was read from, if any
    targets: str | None = None  # the label column, if it has one
    # Of a table summarised before it was let go (`summarised`): `frame` holds its first rows only.
    digest: str | None = None
    rows: int | None = None
    columns: int | None = None

    @classmethod
    def summarised(cls, name: str, frame: pd.DataFrame, context: str, source: str | None = None) -> RunInput:
        """What the run logs about `frame` (digest of every row, row count, the first rows for the schema),
        without keeping the frame: a large table can be freed before the run is logged."""
        return cls(name, frame.head(SCHEMA_SAMPLE_ROWS).copy(), context, source, digest=table_digest(frame),
                   rows=len(frame), columns=frame.shape[1])

    @property
    def n_rows(self) -> int:
        return len(self.frame) if self.rows is None else self.rows


DIGEST_SLICE_ROWS = 1 << 18
SCHEMA_SAMPLE_ROWS = 1000  # the rows the recorded schema is inferred from


def table_digest(frame: pd.DataFrame) -> str:
    """A digest of every row and column of a table (values, column names and types): 32 hex characters.

    MLflow's own pandas digest reads only the first 10,000 rows and skips columns with timestamps or missing
    values (a changed event time does not change it), and it inspects every cell's type in Python.
    """
    import hashlib

    import numpy as np

    digest = hashlib.sha256(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(np.int64(len(frame)).tobytes())
    # Row hashes in slices: the same bytes in the same order as hashing the whole table at once, without a Python
    # string per cell of the whole table (text columns are hashed as objects).
    for start in range(0, len(frame), DIGEST_SLICE_ROWS):
        part = frame.iloc[start:start + DIGEST_SLICE_ROWS]
        try:
            rows = pd.util.hash_pandas_object(part, index=False)
        except TypeError:  # unhashable cells (lists, dicts): hash their text
            rows = pd.util.hash_pandas_object(part.astype(str), index=False)
        digest.update(rows.to_numpy().tobytes())
    return digest.hexdigest()[:32]


def _datasets(inputs: Sequence[RunInput]) -> list:
    import mlflow.data
    from mlflow.data.code_dataset_source import CodeDatasetSource

    out = []
    for item in inputs:
        if item.source and Path(item.source).is_file():
            source: Any = str(Path(item.source).resolve())
        else:  # a frame built in memory, or several files assembled by a dataset config
            source = CodeDatasetSource({"leadscore.source": item.source or "in-memory table"})
        dataset = mlflow.data.from_pandas(item.frame, source=source, name=item.name, targets=item.targets,
                                          digest=item.digest or table_digest(item.frame))
        # MLflow infers the recorded schema value by value in Python (~10 s for a million events); the column
        # types of the first rows say the same, so the (cached) schema is set from a sample.
        dataset.__dict__["schema"] = _sample_schema(item.frame)
        if item.rows is not None:  # a summarised table: its profile counts the whole table, not the sample
            dataset.__class__ = _summarised_dataset_class()
            dataset._summary_profile = {"num_rows": item.rows, "num_elements": item.rows * int(item.columns or 0)}
        out.append(dataset)
    return out


def _summarised_dataset_class():
    """MLflow's pandas dataset with the profile of a whole table whose first rows alone it holds."""
    global _SUMMARISED
    if _SUMMARISED is None:
        from mlflow.data.pandas_dataset import PandasDataset

        class SummarisedPandasDataset(PandasDataset):
            @property
            def profile(self):
                return self._summary_profile

        _SUMMARISED = SummarisedPandasDataset
    return _SUMMARISED


_SUMMARISED = None


def _sample_schema(frame: pd.DataFrame, rows: int = SCHEMA_SAMPLE_ROWS):
    from mlflow.types.utils import _infer_schema  # what PandasDataset.schema calls, on the whole frame

    try:
        return _infer_schema(frame.head(rows))
    except Exception:  # types MLflow cannot express (e.g. pandas categories): record no schema
        log.debug("no schema for a logged table", exc_info=True)
        return None


def _log_inputs(mlflow, inputs: Sequence[RunInput]) -> None:
    import warnings

    if not inputs:
        return
    with warnings.catch_warnings():
        # Two registered local-file source types both accept a path (MLflow warns, then takes the local one),
        # and the schema recorded with a table hints about integer columns meant for model signatures.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted",
                                category=UserWarning)
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer column", category=UserWarning)
        # pandas 3.1 deprecates the `.values` of time-zone-aware columns that MLflow's schema inference reads.
        warnings.filterwarnings("ignore", message="Series.values returning an ndarray that drops timezone")
        mlflow.log_inputs(_datasets(inputs), contexts=[i.context for i in inputs],
                          tags_list=[{"leadscore.rows": str(i.n_rows)} for i in inputs])


@_scoped_tracking
def log_training_run(
    *,
    tracking_uri: str,
    experiment: str,
    bundle: ModelBundle,
    params: Mapping[str, Any],
    metrics: Mapping[str, Mapping[str, float]],
    artifacts: Mapping[str, Sequence[str | os.PathLike]] | Callable[[], Mapping[str, Sequence[str | os.PathLike]]],
    registered_model: str | None = "lead-conversion",
    artifact_root: str | os.PathLike | None = None,
    run_name: str | None = None,
    tags: Mapping[str, str] | None = None,
    input_example: pd.DataFrame | None = None,
    inputs: Sequence[RunInput] = (),
) -> LoggedRun:
    """Log one training run: params, metrics, input tables, files, the pyfunc model with its bundle; register it.

    The first registered version gets alias `champion`; later ones get `challenger` (promotion is explicit).
    `artifacts`: folder -> files, or a function returning them, called once the model is logged (files still
    being written meanwhile). `input_example` (a few rows of `pyfunc_input`) makes MLflow run the model once
    while logging it. `inputs`
    are the tables the run read and the slices it trained and was tested on, each with a digest.
    """
    _quiet_mlflow_logs()
    mlflow = _mlflow(tracking_uri)
    from mlflow import MlflowClient

    root = Path(artifact_root) if artifact_root is not None else None
    if root is None and tracking_uri.startswith("sqlite:///"):
        root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    exp_id = _experiment_id(mlflow, experiment, root)
    with tempfile.TemporaryDirectory(prefix="leadscore-bundle-") as tmp:
        bundle_dir = Path(tmp) / BUNDLE_ARTIFACT
        sha = bundle.save(bundle_dir)
        with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
            flat = {k: ("" if v is None else str(v)[:6000]) for k, v in _flatten("", params, {}).items()}
            mlflow.log_params(flat)
            for group, values in metrics.items():
                mlflow.log_metrics({f"{group}_{k}": float(v) for k, v in values.items()
                                    if isinstance(v, int | float) and v == v})
            mlflow.set_tags({SHA_TAG: sha, **(tags or {})})
            _log_inputs(mlflow, inputs)
            mlflow.log_text(bundle.spec.to_json(), "feature_spec.json")
            # The model carries this package's code (code/leadscore), so it loads where leadscore is not
            # installed: `mlflow models serve`, a Docker image built by MLflow, a Spark worker.
            info = mlflow.pyfunc.log_model(
                name=MODEL_NAME,
                python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
                artifacts={BUNDLE_ARTIFACT: str(bundle_dir)},
                code_paths=[str(_package_tree(Path(tmp) / "code"))],
                signature=model_signature(bundle.spec),
                pip_requirements=model_requirements(),
                metadata={SHA_TAG: sha},
                model_config={SHA_TAG: sha},
                input_example=input_example,
            )
            # Last: a callable may still be waiting for files (the report's figures, drawn meanwhile).
            for folder, paths in (artifacts() if callable(artifacts) else artifacts).items():
                for path in paths:
                    mlflow.log_artifact(str(path), artifact_path=folder)
            run_id = run.info.run_id
    version = alias = None
    if registered_model:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        mv = mlflow.register_model(info.model_uri, registered_model)
        version = str(mv.version)
        try:
            client.get_model_version_by_alias(registered_model, CHAMPION)
            alias = CHALLENGER
        except Exception:  # no champion yet: MlflowException(RESOURCE_DOES_NOT_EXIST)
            alias = CHAMPION
        client.set_registered_model_alias(registered_model, alias, version)
        client.set_model_version_tag(registered_model, version, SHA_TAG, sha)
    return LoggedRun(run_id, exp_id, tracking_uri, f"runs:/{run_id}/{MODEL_NAME}", registered_model, version,
                     alias, sha)


def _find_bundle(root: Path) -> Path:
    if (root / "manifest.json").exists():
        return root
    for candidate in (root / "artifacts" / BUNDLE_ARTIFACT, root / BUNDLE_ARTIFACT):
        if (candidate / "manifest.json").exists():
            return candidate
    found = sorted(root.rglob("manifest.json"))
    if found:
        return found[0].parent
    raise BundleError(f"{root}: no model bundle found (expected manifest.json)")


def _recorded_sha(uri: str, tracking_uri: str) -> str | None:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    if uri.startswith("models:/"):
        ref = uri.removeprefix("models:/")
        if "@" in ref:
            name, alias = ref.split("@", 1)
            mv = client.get_model_version_by_alias(name, alias)
        elif "/" in ref:
            name, version = ref.split("/", 1)
            mv = client.get_model_version(name, version)
        else:
            return None
        return client.get_run(mv.run_id).data.tags.get(SHA_TAG)
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/", 1)[0]
        return client.get_run(run_id).data.tags.get(SHA_TAG)
    return None


@_scoped_tracking
def load_bundle(uri: str | os.PathLike, *, tracking_uri: str | None = None) -> ModelBundle:
    """Load a bundle from `models:/name@alias`, `models:/name/version`, `runs:/id/model`, or a local path.

    For registry and run URIs the bundle's manifest hash must match the one recorded with the run.
    """
    text = str(uri)
    local = Path(text)
    if "://" not in text and ":/" not in text:
        if not local.exists():
            raise DataError(f"{local}: model path not found")
        return ModelBundle.load(_find_bundle(local))
    tracking_uri = tracking_uri or default_tracking_uri()
    require_existing_store(tracking_uri)
    _quiet_mlflow_logs()
    mlflow = _mlflow(tracking_uri)
    try:
        expected = _recorded_sha(text, tracking_uri)
    except Exception as exc:
        raise DataError(f"{text}: cannot resolve model in tracking store {tracking_uri} ({exc})") from exc
    if expected is None and text.startswith(("models:/", "runs:/")):
        # Fail closed: without the hash recorded at training time the files cannot be trusted.
        raise BundleError(f"{text}: no bundle hash ({SHA_TAG}) recorded with its run; refusing to load "
                          f"(use models:/name@alias or models:/name/version of a leadscore model)")
    with tempfile.TemporaryDirectory(prefix="leadscore-model-") as tmp:
        try:
            path = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=tmp))
        except Exception as exc:
            raise DataError(f"{text}: cannot download model from {tracking_uri} ({exc})") from exc
        return ModelBundle.load(_find_bundle(path), expected_manifest_sha256=expected)


@_scoped_tracking
def load_pyfunc(uri: str, *, tracking_uri: str | None = None):
    """The MLflow pyfunc model at a URI (for Spark UDFs, MLflow serving and equivalence tests)."""
    mlflow = _mlflow(tracking_uri or default_tracking_uri())
    return mlflow.pyfunc.load_model(uri)


@_scoped_tracking
def spark_udf(spark, uri: str, *, tracking_uri: str | None = None):
    """`mlflow.pyfunc.spark_udf` of the model at a URI, in this interpreter's environment (struct of probability,
    score and band, as the signature's outputs say)."""
    mlflow = _mlflow(tracking_uri or default_tracking_uri())
    _quiet_mlflow_logs()
    # MLflow warns that "local" does not recreate the training environment: here it is that environment (the
    # workers run this interpreter, see serve.spark.worker_python).
    pyfunc_log = logging.getLogger("mlflow.pyfunc")
    level = pyfunc_log.level
    pyfunc_log.setLevel(logging.ERROR)
    try:
        return mlflow.pyfunc.spark_udf(spark, uri, env_manager="local")
    except Exception as exc:
        raise DataError(f"{uri}: cannot load as a Spark UDF from {tracking_uri} ({exc})") from exc
    finally:
        pyfunc_log.setLevel(level)


def run_summary(run_id: str, *, tracking_uri: str) -> dict[str, Any]:
    """Metrics, params, tags and artifact paths of a run (for tests and notebooks)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    run = client.get_run(run_id)
    files = [f.path for f in client.list_artifacts(run_id)]
    for folder in [f for f in files if "." not in Path(f).name]:
        files += [f.path for f in client.list_artifacts(run_id, folder)]
    return {"metrics": dict(run.data.metrics), "params": dict(run.data.params), "tags": dict(run.data.tags),
            "artifacts": sorted(files), "status": run.info.status}


def registered_alias(name: str, alias: str, *, tracking_uri: str) -> str | None:
    """Version number behind an alias, or None."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except Exception:
        return None


def model_reference(uri: str, *, tracking_uri: str | None = None) -> dict[str, str | None]:
    """Name, version and alias a model URI points at now (`models:/name@alias` resolves its version)."""
    text = str(uri)
    ref = {"uri": text, "name": None, "version": None, "alias": None}
    if text.startswith("models:/"):
        body = text.removeprefix("models:/")
        if "@" in body:
            ref["name"], ref["alias"] = body.split("@", 1)
            ref["version"] = registered_alias(ref["name"], ref["alias"],
                                              tracking_uri=tracking_uri or default_tracking_uri())
        elif "/" in body:
            ref["name"], ref["version"] = body.split("/", 1)
    return ref


def to_json(value: Any) -> str:
    """JSON for run artifacts (numpy scalars and timestamps become plain values)."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _run_experiment(tracking_uri: str, experiment: str):
    """MLflow pointed at the store, and the id of `experiment` (created beside a SQLite store's artifacts)."""
    _quiet_mlflow_logs()
    mlflow = _mlflow(tracking_uri)
    root = None
    if tracking_uri.startswith("sqlite:///"):
        root = Path(tracking_uri.removeprefix("sqlite:///")).parent / "mlartifacts"
    return mlflow, _experiment_id(mlflow, experiment, root)


@_scoped_tracking
def log_comparison(
    *,
    tracking_uri: str,
    experiment: str,
    files: Mapping[str, Path],
    metrics: Mapping[str, float],
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
    model_uri: str | None = None,
    inputs: Sequence[RunInput] = (),
) -> str:
    """Log a model-versus-rules comparison as a new run: report files under `comparison/`, headline metrics,
    the comparison's parameters and input tables.

    With `model_uri`, the run names the model it compared (tags `leadscore.model_*`: URI, registered name,
    version, the version's training run) and that registered version gets tag `leadscore.comparison_run_id`.
    """
    mlflow, exp_id = _run_experiment(tracking_uri, experiment)
    ref = _model_link(model_uri, tracking_uri) if model_uri else {}
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
        if params:
            mlflow.log_params({k: str(v)[:6000] for k, v in _flatten("", params, {}).items() if v is not None})
        # NaN metrics (e.g. an undefined % gain) are left out: MLflow stores them but charts break on them.
        mlflow.log_metrics({k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and v == v})
        mlflow.set_tags({"leadscore.kind": "comparison",
                         **{f"leadscore.model_{k}": str(v) for k, v in ref.items() if v is not None}})
        _log_inputs(mlflow, inputs)
        for path in files.values():
            mlflow.log_artifact(str(path), artifact_path="comparison")
        run_id = run.info.run_id
    if ref.get("name") and ref.get("version"):
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_model_version_tag(
            ref["name"], ref["version"], "leadscore.comparison_run_id", run_id)
    return run_id


def _model_link(model_uri: str, tracking_uri: str) -> dict[str, str | None]:
    """What a model URI points at now: URI, registered name, version, alias and the run that trained it."""
    from mlflow import MlflowClient

    ref: dict[str, str | None] = {**model_reference(model_uri, tracking_uri=tracking_uri), "run_id": None}
    if ref["name"] and ref["version"]:
        client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
        try:
            ref["run_id"] = client.get_model_version(ref["name"], ref["version"]).run_id
        except Exception:  # a version deleted since: the URI and name still say what was compared
            log.debug("model version %s/%s not found", ref["name"], ref["version"])
    elif str(model_uri).startswith("runs:/"):
        ref["run_id"] = str(model_uri).removeprefix("runs:/").split("/", 1)[0]
    return ref


_METRIC_KEY = re.compile(r"[^A-Za-z0-9_\-. /]")


@_scoped_tracking
def log_scoring_run(
    *,
    tracking_uri: str,
    experiment: str,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    texts: Mapping[str, str],
    tags: Mapping[str, str] | None = None,
    run_name: str | None = None,
) -> str:
    """Log one scoring run (its inputs, counts, expected conversions and drift) as a run of its own; returns its id.

    `texts` are written as artifacts (file name -> content), e.g. the drift JSON and the HTML page.
    """
    mlflow, exp_id = _run_experiment(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=exp_id, run_name=run_name) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items() if v is not None})
        # Column names may hold characters MLflow refuses in a metric key.
        mlflow.log_metrics({_METRIC_KEY.sub("_", k)[:250]: float(v) for k, v in metrics.items()
                            if isinstance(v, int | float) and v == v})
        mlflow.set_tags({"leadscore.kind": "scoring", **(tags or {})})
        for name, text in texts.items():
            mlflow.log_text(text, name)
        return run.info.run_id


PREVIOUS_CHAMPION = "previous-champion"


def set_alias(name: str, alias: str, version: str, *, tracking_uri: str) -> None:
    """Point an alias of a registered model at a version."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).set_registered_model_alias(name, alias, version)


def delete_alias(name: str, alias: str, *, tracking_uri: str) -> None:
    """Remove an alias (no error if it does not exist)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    try:
        client.delete_registered_model_alias(name, alias)
    except Exception:  # already absent
        log.debug("alias %s@%s absent", name, alias)


def tag_version(name: str, version: str, tags: Mapping[str, str], *, tracking_uri: str) -> None:
    """Attach tags (e.g. the promotion decision) to a registered model version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, str(value)[:5000])


# MLflow's model-version description column holds 5,000 characters (enforced by PostgreSQL, not by SQLite).
DESCRIPTION_LIMIT = 5000


def fit_description(text: str, *, limit: int = DESCRIPTION_LIMIT, rest: str = "model_card.md") -> str:
    """`text` whole if it fits in `limit` characters; else its leading sections and a pointer to `rest`."""
    if len(text) <= limit:
        return text
    note = f"\n\n*(Shortened to fit the registry's description: the whole card is `{rest}` in this version's run.)*\n"
    head = text[: limit - len(note)]
    cut = head.rfind("\n## ")
    return (head[:cut] if cut > 0 else head).rstrip() + note


def describe_version(name: str, version: str, text: str, *, tracking_uri: str) -> None:
    """Set a registered version's description (the model card; shortened at a section break if too long)."""
    from mlflow import MlflowClient

    MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri).update_model_version(
        name, version, description=fit_description(text))


def log_version_artifact(name: str, version: str, text: str, artifact_file: str, *, tracking_uri: str) -> None:
    """Log a text file (e.g. the model card) into the run that produced a registered version."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    run_id = client.get_model_version(name, version).run_id
    client.log_text(run_id, text, artifact_file)
