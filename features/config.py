"""The one home of configuration: frozen, typed dataclasses built from YAML or keyword arguments.

Unknown keys are rejected so a typo in a config file is an error rather than a silently ignored setting.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leadscore.features.errors import ConfigError

DEFAULT_BAND_NAMES: tuple[str, ...] = ("nurture", "telemarketing", "sales")


@dataclass(frozen=True)
class DataConfig:
    """Where the columns are in the lead, event and outcome tables."""

    lead_id: str = "lead_id"
    created_at: str = "created_at"
    event_lead_id: str = "lead_id"
    event_time: str = "timestamp"
    event_type: str = "event_type"
    converted_at: str = "converted_at"
    # A ready-made 0/1 outcome column (in the lead table or the outcomes table) instead of converted_at;
    # the label is then taken as given, with no window.
    label: str | None = None
    # Feature columns; None means "every other lead column, typed by inference".
    numeric: tuple[str, ...] | None = None
    categorical: tuple[str, ...] | None = None
    # Columns never used as features: a list, or a mapping column -> reason (the reason goes in the model card).
    exclude: tuple[str, ...] | dict[str, str] = ()
    # Cell values that mean "missing" in this export (e.g. an unfilled dropdown: "Select").
    na_values: tuple[str, ...] = ()
    # Set to "," or "." to parse formatted numbers ("$1,200.50", "1.200,50 EUR"); unset, they are an error.
    decimal: str | None = None
    # Leakage probes a column may pass on purpose (after you checked it is known at scoring time).
    allow_columns: tuple[str, ...] = ()

    @property
    def excluded(self) -> dict[str, str]:
        """Excluded columns with their reasons."""
        if isinstance(self.exclude, dict):
            return dict(self.exclude)
        return {c: "excluded by config" for c in self.exclude}

    def __post_init__(self) -> None:
        if self.decimal not in (None, ",", "."):
            raise ConfigError("data.decimal must be ',' or '.'")


@dataclass(frozen=True)
class LabelConfig:
    """Which values of a text outcome column mean converted, and which mean still in progress (left out)."""

    positive: tuple[str, ...] = ()
    open: tuple[str, ...] = ()
    # A conversion dated before the lead's creation: "error" (stop, naming the rows) or "exclude" (leave out, count).
    converted_before_created: str = "error"

    def __post_init__(self) -> None:
        if self.converted_before_created not in ("error", "exclude"):
            raise ConfigError(f"label.converted_before_created must be 'error' or 'exclude', "
                              f"not {self.converted_before_created!r}")
        for name in ("positive", "open"):
            value = getattr(self, name)
            if isinstance(value, str | int | float | bool):
                object.__setattr__(self, name, (str(value),))
            else:
                object.__setattr__(self, name, tuple(str(v) for v in value))


@dataclass(frozen=True)
class JoinConfig:
    """A lookup table joined to the leads (accounts, contacts, ...): many leads to one row."""

    table: str
    by: str  # the key column in the leads table (not "on": YAML reads a bare `on` as the boolean true)
    key: str | None = None  # the key column in the joined table, when named differently from `by`
    columns: tuple[str, ...] | None = None
    prefix: str = ""


@dataclass(frozen=True)
class EventSourceConfig:
    """A table of timestamped activity (touches, sessions, sales activities) that becomes event rows."""

    table: str
    lead_id: str = "lead_id"
    time: str = "timestamp"
    type: str | None = None  # column with the event type
    type_value: str | None = None  # or one fixed type for every row
    prefix: str = ""

    def __post_init__(self) -> None:
        if (self.type is None) == (self.type_value is None):
            raise ConfigError(f"events entry for {self.table!r}: give exactly one of 'type' or 'type_value'")


@dataclass(frozen=True)
class OutcomeConfig:
    """Where conversions come from: a table (or several) keyed by lead id with a won date or a 0/1 label."""

    table: str | tuple[str, ...]
    lead_id: str = "lead_id"
    time: str | None = None
    label: str | None = None

    def __post_init__(self) -> None:
        if (self.time is None) == (self.label is None):
            raise ConfigError("dataset.outcomes: give exactly one of 'time' (won date) or 'label' (0/1 column)")


@dataclass(frozen=True)
class DatasetConfig:
    """The tables of a CRM export. Paths are relative to the config file."""

    leads: str | None = None
    joins: tuple[JoinConfig, ...] = ()
    outcomes: OutcomeConfig | None = None
    events: tuple[EventSourceConfig, ...] = ()


@dataclass(frozen=True)
class FeatureConfig:
    """How a lead becomes a row: the as-of rule, the label window and the event aggregations."""

    as_of_days: int = 14
    label_window_days: int = 90
    windows: tuple[int, ...] = (7, 30, 90)
    half_life_days: float = 14.0
    # Event types to count; None learns them from the training events (fixed afterwards).
    event_types: tuple[str, ...] | None = None
    # Event types that do not count as engagement (for recency, decayed engagement, active days).
    negative_event_types: tuple[str, ...] = ("unsubscribe", "email_bounce")
    max_categories: int = 200
    min_category_count: int = 10

    def __post_init__(self) -> None:
        if self.as_of_days < 0:
            raise ConfigError("features.as_of_days must be >= 0")
        if self.label_window_days <= 0:
            raise ConfigError("features.label_window_days must be > 0")
        if not self.windows or any(w <= 0 for w in self.windows):
            raise ConfigError("features.windows must be positive day counts")
        if self.half_life_days <= 0:
            raise ConfigError("features.half_life_days must be > 0")


@dataclass(frozen=True)
class SplitConfig:
    """Time split fractions (train < calibration < test by as_of)."""

    calibration_fraction: float = 0.2
    test_fraction: float = 0.2
    # A fixed test start (ISO date): leads with as_of on or after it are the test slice (instead of a fraction).
    test_start: str | None = None

    def __post_init__(self) -> None:
        if not (0 < self.calibration_fraction < 1 and 0 < self.test_fraction < 1):
            raise ConfigError("split fractions must lie in (0, 1)")
        if self.calibration_fraction + self.test_fraction >= 0.8:
            raise ConfigError("split: calibration_fraction + test_fraction must leave >= 20% for training")


@dataclass(frozen=True)
class ModelConfig:
    """LightGBM and baseline settings. Shallow trees by default: similar AUC, faster explanations."""

    learning_rate: float = 0.05
    num_leaves: int = 15
    min_child_samples: int = 40
    max_trees: int = 1500
    early_stopping_rounds: int = 100  # 0 turns early stopping off (exactly max_trees)
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    reg_lambda: float = 1.0
    # Early stopping uses this last share of the training slice (by time), then the model is refit on all of it.
    early_stopping_fraction: float = 0.15
    logistic_c: float = 1.0
    # "auto" picks none / sigmoid / isotonic by cross-validated log loss on the calibration slice
    # (isotonic only with at least 1,000 calibration rows).
    calibration: str = "auto"
    # Up to this many training leads, K-fold cross-fitting: out-of-fold margins choose the learner and fit the
    # calibrator, and the chosen learner is refitted on every non-test lead (no calibration slice). Above it, the
    # configured LightGBM is fitted on the training slice and calibrated on the calibration slice.
    crossfit_max_rows: int = 50_000
    cv_folds: int = 5
    # Learners the cross-fit may choose from (by cross-validated log loss; ties go to the simpler).
    candidates: tuple[str, ...] = ("lightgbm", "lightgbm_defaults", "lightgbm_small", "logistic",
                                   "logistic_splines", "blend")

    def __post_init__(self) -> None:
        known = {"lightgbm", "lightgbm_defaults", "lightgbm_small", "logistic", "logistic_splines", "blend"}
        unknown = [c for c in self.candidates if c not in known]
        if unknown or not self.candidates:
            raise ConfigError(f"model.candidates: unknown learner(s) {unknown}; choose from {sorted(known)}")
        if self.cv_folds < 2:
            raise ConfigError("model.cv_folds must be >= 2")
        if self.calibration not in ("auto", "sigmoid", "isotonic", "none"):
            raise ConfigError(f"model.calibration must be 'auto', 'sigmoid', 'isotonic' or 'none', "
                              f"not {self.calibration!r}")


@dataclass(frozen=True)
class BandConfig:
    """Score bands. Cut-offs are lower score bounds (0-100) of every band after the first.

    Without explicit cut-offs, training sets them from capacity shares: the top `shares[-1]` of the
    calibration slice go to the last band, the next `shares[-2]` to the one before, and so on.
    """

    names: tuple[str, ...] = DEFAULT_BAND_NAMES
    cutoffs: tuple[float, ...] | None = None
    shares: tuple[float, ...] = (0.20, 0.10)

    def __post_init__(self) -> None:
        if len(self.names) < 2:
            raise ConfigError("bands.names needs at least two bands")
        if self.cutoffs is not None:
            if len(self.cutoffs) != len(self.names) - 1:
                raise ConfigError("bands.cutoffs needs one value per band after the first")
            if list(self.cutoffs) != sorted(self.cutoffs) or not all(0 <= c <= 100 for c in self.cutoffs):
                raise ConfigError("bands.cutoffs must be increasing scores within 0-100")
        if len(self.shares) != len(self.names) - 1 or sum(self.shares) >= 1:
            raise ConfigError("bands.shares needs one share per band after the first, summing below 1")


@dataclass(frozen=True)
class CheckConfig:
    """Data checks run before training: sufficiency gate and leakage probe thresholds."""

    min_positives: int = 120
    min_negatives: int = 120
    leak_auc: float = 0.90  # a single column ranking the label this well is almost surely a leak
    missingness_auc: float = 0.90  # non-null-ness alone predicting the label this well: filled after the outcome
    stop_on_leaks: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs besides the data."""

    data: DataConfig = field(default_factory=DataConfig)
    label: LabelConfig = field(default_factory=LabelConfig)
    features: FeatureConfig = field(default_factory=FeatureConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    bands: BandConfig = field(default_factory=BandConfig)
    dataset: DatasetConfig | None = None
    # Trials of the hyperparameter search (0 = sensible defaults with early stopping, no search).
    tune_trials: int = 0
    # Extra columns to report metrics by segment (lead_source, industry, country are included when present).
    segment_columns: tuple[str, ...] = ()
    checks: CheckConfig = field(default_factory=lambda: CheckConfig())
    seed: int = 0
    experiment: str = "lead-conversion"
    registered_model: str = "lead-conversion"
    # Words of the reasons, stored with the model: {"fields": {column or event type: label},
    # "events": {event type: {"count": "Viewed the pricing page {times} in the last {days} days", "none": ...}}}.
    reasons: dict = field(default_factory=dict)


_NESTED: dict[tuple[type, str], type] = {}
_NESTED_LISTS: dict[tuple[type, str], type] = {}


def _build(cls: type, values: Any, where: str) -> Any:
    if values is None:
        return cls()
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(values).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted((k for k in values if k not in fields), key=str)
    if unknown:
        hint = ""
        if any(isinstance(k, bool) for k in unknown):
            hint = " (YAML reads bare on/off/yes/no keys as booleans: quote them)"
        raise ConfigError(f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {unknown}; allowed: "
                          f"{sorted(fields)}{hint}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        default = fields[name].default
        sub = _NESTED.get((cls, name))
        item = _NESTED_LISTS.get((cls, name))
        if sub is not None:
            kwargs[name] = _build(sub, value, f"{where}.{name}")
        elif item is not None:
            if not isinstance(value, list):
                raise ConfigError(f"{where}.{name}: expected a list")
            kwargs[name] = tuple(_build(item, v, f"{where}.{name}[{i}]") for i, v in enumerate(value))
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        elif isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            kwargs[name] = float(value)
        else:
            kwargs[name] = value
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"{where}: {exc}") from exc


_NESTED.update({
    (TrainConfig, "data"): DataConfig, (TrainConfig, "features"): FeatureConfig, (TrainConfig, "split"): SplitConfig,
    (TrainConfig, "model"): ModelConfig, (TrainConfig, "bands"): BandConfig, (TrainConfig, "dataset"): DatasetConfig,
    (TrainConfig, "checks"): CheckConfig, (DatasetConfig, "outcomes"): OutcomeConfig,
    (TrainConfig, "label"): LabelConfig,
})
_NESTED_LISTS.update({(DatasetConfig, "joins"): JoinConfig, (DatasetConfig, "events"): EventSourceConfig})


def config_from_dict(values: dict[str, Any] | None, where: str = "config") -> TrainConfig:
    """Build a TrainConfig from a nested mapping, rejecting unknown keys."""
    return _build(TrainConfig, values or {}, where)


def read_yaml(path: str | os.PathLike, *, what: str = "config") -> Any:
    """Parse a YAML file; a missing file or invalid YAML is a one-line ConfigError naming the file."""
    import yaml

    path = Path(path)
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML ({' '.join(str(exc).split())})") from exc


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Read a YAML config file into a TrainConfig."""
    values = read_yaml(path)
    return resolve_paths(_build(TrainConfig, values or {}, str(path)), Path(path).parent)


def resolve_paths(config: TrainConfig, base: str | os.PathLike) -> TrainConfig:
    """Make the dataset's relative table paths relative to `base` (the config file's folder)."""
    if config.dataset is None:
        return config
    base = Path(base)

    def fix(path: str) -> str:
        return str(path) if Path(path).is_absolute() else str((base / path).resolve())

    ds = config.dataset
    outcomes = ds.outcomes
    if outcomes is not None:
        tables = outcomes.table if isinstance(outcomes.table, tuple) else (outcomes.table,)
        outcomes = dataclasses.replace(outcomes, table=tuple(fix(t) for t in tables))
    ds = dataclasses.replace(
        ds,
        leads=None if ds.leads is None else fix(ds.leads),
        joins=tuple(dataclasses.replace(j, table=fix(j.table)) for j in ds.joins),
        events=tuple(dataclasses.replace(e, table=fix(e.table)) for e in ds.events),
        outcomes=outcomes,
    )
    return dataclasses.replace(config, dataset=ds)


def config_to_dict(config: Any) -> dict[str, Any]:
    """Plain nested dict of a config (for logging as params and saving with the model)."""
    return dataclasses.asdict(config)
