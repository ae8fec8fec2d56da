"""Manual point rules for lead scores, configured in YAML the way marketing writes them today.

A rule set has criteria in groups. Column criteria (explicit "fit", or flat behaviour counts) test one lead
column; event criteria (implicit "engagement") count events of some types up to as_of, optionally capped per
lead (`max_count`), limited to a recent window (`within_days`) and decayed by their group. Each group total is
the sum of its criteria's points (negatives included), clipped to [floor, cap]; the score is the sum of the
group totals, clipped to `total_cap`. Bands use inclusive upper bounds (see `ScoreBands`).

Scoring is vectorised: one pass over the event log per event criterion, never a loop over leads.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from leadscore.features.build import resolve_as_of
from leadscore.features.config import read_yaml
from leadscore.features.errors import ConfigError, DataError, describe_rows
from leadscore.features.io import parse_numbers, parse_timestamps, require_columns

AS_OF = "as_of"
OPS: tuple[str, ...] = (
    "eq", "ne", "in", "not_in", "gt", "ge", "lt", "le", "between", "contains", "is_true", "is_missing",
)
N_REASONS = 3
_NUMERIC_OPS = ("gt", "ge", "lt", "le")
_NO_VALUE_OPS = ("is_true", "is_missing")
_DAY_US = 86_400 * 1_000_000
_GROUP_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


@dataclass(frozen=True)
class ColumnCriterion:
    """Points when a lead column passes a test (fit attributes, or behaviour counts in flat exports)."""

    name: str
    column: str
    op: str
    points: float
    value: Any = None
    group: str = "fit"


@dataclass(frozen=True)
class EventCriterion:
    """Points per event of the given types at or before as_of (capped at `max_count` most recent events)."""

    name: str
    event_types: tuple[str, ...]
    points: float
    max_count: int | None = None
    within_days: float | None = None
    group: str = "engagement"


Criterion = ColumnCriterion | EventCriterion


@dataclass(frozen=True)
class Decay:
    """Ageing of event points: multiplicative half-life, or expiry after a number of days (exactly one)."""

    half_life_days: float | None = None
    expire_after_days: float | None = None


@dataclass(frozen=True)
class Group:
    """A group of criteria whose total is clipped to [floor, cap]; `decay` ages its event points."""

    name: str
    cap: float | None = None
    floor: float | None = 0.0
    decay: Decay | None = None


@dataclass(frozen=True)
class ScoreBands:
    """Band names with inclusive upper bounds for every band but the last.

    With the defaults a score s is `nurture` if s <= 40, `telemarketing` if 40 < s <= 60 and `sales` if s > 60
    (for whole scores: 0-40, 41-60, 61 and above).
    """

    names: tuple[str, ...] = ("nurture", "telemarketing", "sales")
    upper: tuple[float, ...] = (40.0, 60.0)

    def assign(self, scores: np.ndarray | pd.Series) -> pd.Series:
        """Band name per score (missing where the score is missing)."""
        values = np.asarray(scores, dtype="float64")
        idx = np.searchsorted(np.asarray(self.upper, dtype="float64"), values, side="left")
        names = np.asarray(self.names, dtype=object)[np.minimum(idx, len(self.names) - 1)]
        return pd.Series(names, dtype="str").mask(np.isnan(values))

    @property
    def top(self) -> str:
        """The highest band (the one alerts are about)."""
        return self.names[-1]


@dataclass(frozen=True)
class RuleSet:
    """A complete manual scoring scheme: criteria, groups, optional total cap and bands."""

    criteria: tuple[Criterion, ...]
    groups: tuple[Group, ...] = (Group("fit"), Group("engagement"))
    bands: ScoreBands = field(default_factory=ScoreBands)
    total_cap: float | None = None
    name: str = ""

    def group(self, name: str) -> Group:
        """The group called `name`."""
        return next(g for g in self.groups if g.name == name)


# ----------------------------------------------------------------------------------------------- loading


def _mapping(value: Any, where: str, allowed: Sequence[str], required: Sequence[str] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise ConfigError(f"{where}.{unknown[0]}: unknown key; allowed: {sorted(allowed)}")
    missing = [k for k in required if value.get(k) is None]
    if missing:
        raise ConfigError(f"{where}.{missing[0]}: required")
    return value


def _number(value: Any, where: str, *, positive: bool = False, optional: bool = False) -> float | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{where}: must be > 0, got {value!r}")
    return float(value)


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: expected a non-empty text, got {value!r}")
    return value.strip()


def _scalar(value: Any, where: str) -> Any:
    if isinstance(value, bool | int | float | str) and not (isinstance(value, float) and np.isnan(value)):
        return value
    raise ConfigError(f"{where}: expected a single value (text, number or true/false), got {value!r}")


def _op_value(op: str, value: Any, where: str) -> Any:
    if op in _NO_VALUE_OPS:
        if value is not None:
            raise ConfigError(f"{where}: op '{op}' takes no value")
        return None
    if value is None:
        raise ConfigError(f"{where}: required for op '{op}'")
    if op in ("eq", "ne"):
        return _scalar(value, where)
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise ConfigError(f"{where}: op '{op}' needs a non-empty list")
        return tuple(_scalar(v, f"{where}[{i}]") for i, v in enumerate(value))
    if op in _NUMERIC_OPS:
        return _number(value, where)
    if op == "between":
        if not isinstance(value, list) or len(value) != 2:
            raise ConfigError(f"{where}: op 'between' needs [low, high]")
        low, high = (_number(v, f"{where}[{i}]") for i, v in enumerate(value))
        if low > high:
            raise ConfigError(f"{where}: low {low:g} is above high {high:g}")
        return (low, high)
    # contains: one text or a list of texts (any of them)
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{where}: op 'contains' needs a text or a non-empty list of texts")
    return tuple(_text(v, f"{where}[{i}]" if isinstance(value, list) else where) for i, v in enumerate(items))


def _criterion(raw: Any, where: str, groups: dict[str, Group]) -> Criterion:
    if isinstance(raw, dict) and "event_type" in raw and "column" in raw:
        raise ConfigError(f"{where}: give either 'column' (lead attribute) or 'event_type' (events), not both")
    if isinstance(raw, dict) and "event_type" in raw:
        allowed = ("name", "event_type", "points", "max_count", "within_days", "group")
        d = _mapping(raw, where, allowed, ("name", "event_type", "points"))
        types = d["event_type"] if isinstance(d["event_type"], list) else [d["event_type"]]
        if not types:
            raise ConfigError(f"{where}.event_type: needs at least one event type")
        max_count = d.get("max_count")
        if max_count is not None and (isinstance(max_count, bool) or not isinstance(max_count, int) or max_count < 1):
            raise ConfigError(f"{where}.max_count: expected a whole number >= 1, got {max_count!r}")
        crit: Criterion = EventCriterion(
            name=_text(d["name"], f"{where}.name"),
            event_types=tuple(_text(t, f"{where}.event_type") for t in types),
            points=_number(d["points"], f"{where}.points"),
            max_count=max_count,
            within_days=_number(d.get("within_days"), f"{where}.within_days", positive=True, optional=True),
            group=_text(d.get("group", "engagement"), f"{where}.group"),
        )
    else:
        allowed = ("name", "column", "op", "value", "points", "group")
        d = _mapping(raw, where, allowed, ("name", "column", "op", "points"))
        op = d["op"]
        if op not in OPS:
            raise ConfigError(f"{where}.op: unknown operator {op!r}; allowed: {list(OPS)}")
        crit = ColumnCriterion(
            name=_text(d["name"], f"{where}.name"),
            column=_text(d["column"], f"{where}.column"),
            op=op,
            points=_number(d["points"], f"{where}.points"),
            value=_op_value(op, d.get("value"), f"{where}.value"),
            group=_text(d.get("group", "fit"), f"{where}.group"),
        )
    if crit.group not in groups:
        raise ConfigError(f"{where}.group: unknown group {crit.group!r}; declare it under 'groups' ({sorted(groups)})")
    return crit


def _group(name: Any, raw: Any, where: str) -> Group:
    if not isinstance(name, str) or not _GROUP_NAME.match(name):
        raise ConfigError(f"{where}: group names are lower-case words (letters, digits, _), got {name!r}")
    d = _mapping(raw if raw is not None else {}, where, ("cap", "floor", "decay"))
    cap = _number(d.get("cap"), f"{where}.cap", optional=True)
    floor = _number(d.get("floor", 0.0), f"{where}.floor", optional=True)
    if cap is not None and floor is not None and cap < floor:
        raise ConfigError(f"{where}.cap: {cap:g} is below the floor {floor:g}")
    decay = None
    if d.get("decay") is not None:
        dd = _mapping(d["decay"], f"{where}.decay", ("half_life_days", "expire_after_days"))
        if len(dd) != 1:
            raise ConfigError(f"{where}.decay: give exactly one of half_life_days, expire_after_days")
        key = next(iter(dd))
        decay = Decay(**{key: _number(dd[key], f"{where}.decay.{key}", positive=True)})
    return Group(name, cap, floor, decay)


def _bands(raw: Any, where: str) -> ScoreBands:
    if raw is None:
        return ScoreBands()
    if not isinstance(raw, list) or len(raw) < 2:
        raise ConfigError(f"{where}: expected a list of at least two bands like {{name: nurture, max: 40}}")
    names, upper = [], []
    for i, item in enumerate(raw):
        last = i == len(raw) - 1
        d = _mapping(item, f"{where}[{i}]", ("name", "max"), ("name",) if last else ("name", "max"))
        names.append(_text(d["name"], f"{where}[{i}].name"))
        if last and d.get("max") is not None:
            raise ConfigError(f"{where}[{i}].max: the last band has no upper bound")
        if not last:
            upper.append(_number(d["max"], f"{where}[{i}].max"))
    if upper != sorted(upper) or len(set(upper)) != len(upper):
        raise ConfigError(f"{where}: band 'max' values must increase")
    if len(set(names)) != len(names):
        raise ConfigError(f"{where}: band names must be distinct")
    return ScoreBands(tuple(names), tuple(upper))


def rules_from_dict(values: dict[str, Any], where: str = "rules") -> RuleSet:
    """Build a RuleSet from a mapping; unknown keys, bad operators and missing fields are ConfigErrors."""
    d = _mapping(values, where, ("name", "description", "groups", "total_cap", "bands", "criteria"), ("criteria",))
    groups = {"fit": Group("fit"), "engagement": Group("engagement")}
    raw_groups = d.get("groups") or {}
    if not isinstance(raw_groups, dict):
        raise ConfigError(f"{where}.groups: expected a mapping of group name to settings")
    for name, raw in raw_groups.items():
        groups[name] = _group(name, raw, f"{where}.groups.{name}")
    raw_criteria = d["criteria"]
    if not isinstance(raw_criteria, list) or not raw_criteria:
        raise ConfigError(f"{where}.criteria: expected a non-empty list")
    criteria = tuple(_criterion(c, f"{where}.criteria[{i}]", groups) for i, c in enumerate(raw_criteria))
    seen: set[str] = set()
    for i, crit in enumerate(criteria):
        if crit.name in seen:
            raise ConfigError(f"{where}.criteria[{i}].name: duplicate criterion name {crit.name!r}")
        seen.add(crit.name)
    total_cap = _number(d.get("total_cap"), f"{where}.total_cap", positive=True, optional=True)
    name = d.get("name") or ""
    return RuleSet(criteria, tuple(groups.values()), _bands(d.get("bands"), f"{where}.bands"), total_cap, str(name))


def load_rules(path: str | os.PathLike) -> RuleSet:
    """Read a YAML rule file into a RuleSet (ConfigError naming the file and key path on problems)."""
    values = read_yaml(path, what="rule")
    return rules_from_dict(values if values is not None else {}, str(path))


# ----------------------------------------------------------------------------------------------- scoring


def _micros(stamps: pd.Series) -> np.ndarray:
    return stamps.astype("datetime64[us, UTC]").dt.tz_convert(None).to_numpy().view("int64")


def _resolve_as_of(leads: pd.DataFrame, as_of: pd.Timestamp | str | None, source: str) -> pd.Series:
    """Explicit as_of for every lead, else the leads' `as_of` column, else now (UTC): the model's rule."""
    return resolve_as_of(leads, None, as_of, source=source)


def _numbers(values: pd.Series, source: str, column: str) -> pd.Series:
    if pd.api.types.is_bool_dtype(values.dtype):
        # Nullable booleans with NA cannot go straight to float64.
        return pd.Series(values.astype("Float64").to_numpy("float64", na_value=np.nan), index=values.index)
    numbers, bad = parse_numbers(values, source=source, column=column)
    if bad.any():
        example = values[bad].iloc[0]
        rows = [int(i) + 1 for i in np.flatnonzero(bad.to_numpy())]
        raise DataError(f"{source}: column {column!r}: cannot read {example!r} as a number ({describe_rows(rows)})")
    return numbers


def _norm_text(values: pd.Series) -> pd.Series:
    text = values.astype("string").str.strip().str.casefold()
    return text.mask(text == "")


def _column_hits(crit: ColumnCriterion, values: pd.Series, source: str) -> np.ndarray:
    """Boolean per lead. A missing cell matches nothing except `is_missing` (also for ne / not_in)."""
    op, value = crit.op, crit.value
    if op == "is_missing":
        return _norm_text(values).isna().to_numpy()
    if op == "is_true":
        numbers = _numbers(values, source, crit.column)
        return (numbers.notna() & (numbers != 0)).to_numpy()
    if op == "contains":
        text = _norm_text(values)
        hit = pd.Series(False, index=values.index)
        for part in value:
            hit |= text.str.contains(part.casefold(), regex=False).fillna(False).astype(bool)
        return hit.to_numpy()
    items = value if isinstance(value, tuple) else (value,)
    numeric = all(isinstance(v, int | float) for v in items)  # bools count as 1/0 as well
    if numeric:
        data = _numbers(values, source, crit.column)
        items = tuple(float(v) for v in items)
    else:
        data = _norm_text(values)
        items = tuple(str(v).strip().casefold() for v in items)
    present = data.notna()
    if op == "eq":
        hit = data == items[0]
    elif op == "ne":
        hit = data != items[0]
    elif op == "in":
        hit = data.isin(items)
    elif op == "not_in":
        hit = ~data.isin(items)
    elif op == "gt":
        hit = data > items[0]
    elif op == "ge":
        hit = data >= items[0]
    elif op == "lt":
        hit = data < items[0]
    elif op == "le":
        hit = data <= items[0]
    else:  # between, both ends included
        hit = (data >= items[0]) & (data <= items[1])
    return (hit.fillna(False).astype(bool) & present).to_numpy()


@dataclass(frozen=True)
class _Events:
    """The event log mapped to lead rows, sorted by row then newest first (so a subset is too)."""

    row: np.ndarray
    micros: np.ndarray
    type_code: np.ndarray
    types: pd.Index


def _prepare_events(
    ids: pd.Series, events: pd.DataFrame | None, *, event_lead_id: str, event_time: str, event_type: str,
    source: str,
) -> _Events:
    if events is None or len(events) == 0:
        empty = np.zeros(0, dtype="int64")
        return _Events(empty, empty, empty, pd.Index([], dtype=object))
    require_columns(events, [event_lead_id, event_time, event_type], source=source, what="event")
    micros = _micros(parse_timestamps(events[event_time], source=source, column=event_time, allow_missing=False))
    ev_ids = events[event_lead_id]
    lead_ids = ids
    if pd.api.types.is_numeric_dtype(ev_ids.dtype) != pd.api.types.is_numeric_dtype(lead_ids.dtype):
        ev_ids, lead_ids = ev_ids.astype("string"), lead_ids.astype("string")
    index = pd.Index(lead_ids)
    if index.is_unique:
        row = index.get_indexer(pd.Index(ev_ids))
        keep = row >= 0
        ev_pos, row = np.flatnonzero(keep), row[keep]
    else:
        # The same lead may appear on several rows (e.g. several as_of dates): every row gets its events.
        left = pd.DataFrame({"key": pd.Index(ev_ids), "ev": np.arange(len(events))})
        right = pd.DataFrame({"key": index, "row": np.arange(len(index))})
        pairs = left.merge(right, on="key", how="inner")
        ev_pos, row = pairs["ev"].to_numpy(), pairs["row"].to_numpy()
    type_code, types = pd.factorize(events[event_type].to_numpy()[ev_pos] if len(ev_pos) else np.array([]))
    micros = micros[ev_pos]
    order = np.lexsort((-micros, row))
    return _Events(row[order].astype("int64"), micros[order], type_code[order], pd.Index(types))


def _rank_within_row(row: np.ndarray) -> np.ndarray:
    """0 for each row's first (newest) event, 1 for the next, ...; `row` is sorted."""
    if len(row) == 0:
        return row
    starts = np.flatnonzero(np.r_[True, row[1:] != row[:-1]])
    sizes = np.diff(np.r_[starts, len(row)])
    return np.arange(len(row)) - np.repeat(starts, sizes)


def _event_points(
    crit: EventCriterion, group: Group, ev: _Events, age: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Points and counted events per lead row for one event criterion (`age`: as_of minus event time, us)."""
    wanted = ev.types.get_indexer(pd.Index(crit.event_types))
    wanted = wanted[wanted >= 0]
    if len(wanted) == 0 or n == 0:
        return np.zeros(n), np.zeros(n, dtype="int64")
    mask = np.isin(ev.type_code, wanted) & (age >= 0)  # point-in-time: nothing after as_of
    decay = group.decay
    if crit.within_days is not None:
        mask &= age <= crit.within_days * _DAY_US
    if decay is not None and decay.expire_after_days is not None:
        mask &= age <= decay.expire_after_days * _DAY_US
    idx = np.flatnonzero(mask)
    if crit.max_count is not None:
        idx = idx[_rank_within_row(ev.row[idx]) < crit.max_count]
    rows = ev.row[idx]
    weights = np.full(len(idx), crit.points)
    if decay is not None and decay.half_life_days is not None:
        weights = weights * 0.5 ** (age[idx] / (decay.half_life_days * _DAY_US))
    return np.bincount(rows, weights=weights, minlength=n), np.bincount(rows, minlength=n)


def _format_points(values: np.ndarray) -> np.ndarray:
    """'+50', '-20', '+12.5' per value; formatted once per distinct value, not once per lead."""
    rounded = np.round(values, 2)
    uniq, inverse = np.unique(rounded, return_inverse=True)
    labels = np.array([f"{u:+.2f}".rstrip("0").rstrip(".") for u in uniq], dtype=object)
    return labels[inverse]


def _reasons(rules: RuleSet, points: np.ndarray, counts: np.ndarray, fired: np.ndarray) -> pd.DataFrame:
    n, k = points.shape
    key = np.where(fired & (points != 0), np.abs(points), -1.0)
    order = np.argsort(-key, axis=1, kind="stable")
    names = np.array([c.name for c in rules.criteria], dtype=object)
    is_event = np.array([isinstance(c, EventCriterion) for c in rules.criteria])
    rows = np.arange(n)
    out = {}
    for j in range(N_REASONS):
        if j >= k:
            out[f"reason_{j + 1}"] = pd.Series(pd.NA, index=range(n), dtype="str")
            continue
        crit = order[:, j]
        ok = key[rows, crit] > 0
        event = is_event[crit]
        count_text = (" x" + pd.Series(counts[rows, crit]).astype("str")).where(event, "")
        points_text = pd.Series(_format_points(points[rows, crit]), dtype="str")
        text = pd.Series(names[crit], dtype="str") + count_text + " (" + points_text + ")"
        out[f"reason_{j + 1}"] = text.where(ok)
    return pd.DataFrame(out)


def _assemble(
    rules: RuleSet, ids: pd.Series, as_of: pd.Series, points: np.ndarray, counts: np.ndarray,
    fired: np.ndarray, *, id_column: str, reasons: bool, groups_out: bool = True,
) -> pd.DataFrame:
    n = len(ids)
    group_index = {g.name: i for i, g in enumerate(rules.groups)}
    member = np.array([group_index[c.group] for c in rules.criteria])
    totals = np.zeros((n, len(rules.groups)))
    for gi, group in enumerate(rules.groups):
        total = points[:, member == gi].sum(axis=1)
        if group.floor is not None:
            total = np.maximum(total, group.floor)
        if group.cap is not None:
            total = np.minimum(total, group.cap)
        totals[:, gi] = total
    score = totals.sum(axis=1)
    if rules.total_cap is not None:
        score = np.minimum(score, rules.total_cap)
    score = np.round(score, 2) + 0.0  # + 0.0 turns -0.0 into 0.0
    out: dict[str, Any] = {id_column: ids.reset_index(drop=True), AS_OF: as_of.reset_index(drop=True)}
    if groups_out:
        for gi, group in enumerate(rules.groups):
            out[f"points_{group.name}"] = np.round(totals[:, gi], 2) + 0.0
    out["score"] = score
    frame = pd.DataFrame(out)
    frame["band"] = rules.bands.assign(score)
    if reasons:
        frame = pd.concat([frame, _reasons(rules, points, counts, fired)], axis=1)
    return frame


@dataclass(frozen=True)
class _Prepared:
    ids: pd.Series
    column_hits: dict[int, np.ndarray]
    events: _Events


def _prepare(
    rules: RuleSet, leads: pd.DataFrame, events: pd.DataFrame | None, *, id_column: str, event_lead_id: str,
    event_time: str, event_type: str, source: str, events_source: str,
) -> _Prepared:
    columns = [c.column for c in rules.criteria if isinstance(c, ColumnCriterion)]
    require_columns(leads, [id_column], source=source, what="id")
    require_columns(leads, list(dict.fromkeys(columns)), source=source, what="rule")
    leads = leads.reset_index(drop=True)
    hits = {
        i: _column_hits(c, leads[c.column], source)
        for i, c in enumerate(rules.criteria)
        if isinstance(c, ColumnCriterion)
    }
    has_event_rules = any(isinstance(c, EventCriterion) for c in rules.criteria)
    ev = _prepare_events(
        leads[id_column], events if has_event_rules else None, event_lead_id=event_lead_id, event_time=event_time,
        event_type=event_type, source=events_source,
    )
    return _Prepared(leads[id_column], hits, ev)


def _contributions(
    rules: RuleSet, prepared: _Prepared, as_of_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n, k = len(prepared.ids), len(rules.criteria)
    points, counts, fired = np.zeros((n, k)), np.zeros((n, k), dtype="int64"), np.zeros((n, k), dtype=bool)
    age = as_of_us[prepared.events.row] - prepared.events.micros
    for i, crit in enumerate(rules.criteria):
        if isinstance(crit, ColumnCriterion):
            hit = prepared.column_hits[i]
            points[:, i] = np.where(hit, crit.points, 0.0)
            fired[:, i] = hit
        else:
            points[:, i], counts[:, i] = _event_points(crit, rules.group(crit.group), prepared.events, age, n)
            fired[:, i] = counts[:, i] > 0
    return points, counts, fired


def score_rules(
    rules: RuleSet,
    leads: pd.DataFrame,
    events: pd.DataFrame | None = None,
    as_of: pd.Timestamp | str | None = None,
    *,
    reasons: bool = True,
    id_column: str = "lead_id",
    event_lead_id: str = "lead_id",
    event_time: str = "timestamp",
    event_type: str = "event_type",
    source: str = "leads",
    events_source: str = "events",
) -> pd.DataFrame:
    """Score leads with a rule set: id, as_of, points_<group>, score, band, reason_1..3 (one row per lead).

    `as_of`: one time for all leads, else the leads' `as_of` column, else now (UTC). Only events with
    timestamp <= as_of count. Without events, event criteria score nothing.
    """
    prepared = _prepare(rules, leads, events, id_column=id_column, event_lead_id=event_lead_id,
                        event_time=event_time, event_type=event_type, source=source, events_source=events_source)
    stamps = _resolve_as_of(leads, as_of, source).reset_index(drop=True)
    points, counts, fired = _contributions(rules, prepared, _micros(stamps))
    return _assemble(rules, prepared.ids, stamps, points, counts, fired, id_column=id_column, reasons=reasons)


def replay_scores(
    rules: RuleSet,
    leads: pd.DataFrame,
    events: pd.DataFrame | None,
    dates: Sequence[pd.Timestamp | str],
    *,
    id_column: str = "lead_id",
    event_lead_id: str = "lead_id",
    event_time: str = "timestamp",
    event_type: str = "event_type",
    source: str = "leads",
    events_source: str = "events",
    created_column: str | None = None,
) -> pd.DataFrame:
    """Every lead's score as of each date, replayed from the event log: id, as_of, score, band.

    With `created_column`, leads created after a date are left out of that date.
    """
    prepared = _prepare(rules, leads, events, id_column=id_column, event_lead_id=event_lead_id,
                        event_time=event_time, event_type=event_type, source=source, events_source=events_source)
    created = None
    if created_column is not None:
        require_columns(leads, [created_column], source=source)
        created = _micros(parse_timestamps(leads[created_column].reset_index(drop=True), source=source,
                                           column=created_column, allow_missing=False))
    frames = []
    for date in dates:
        stamps = _resolve_as_of(prepared.ids.to_frame(), date, source)
        as_of_us = _micros(stamps)
        points, counts, fired = _contributions(rules, prepared, as_of_us)
        frame = _assemble(rules, prepared.ids, stamps, points, counts, fired, id_column=id_column,
                          reasons=False, groups_out=False)
        if created is not None:
            frame = frame[created <= as_of_us]
        frames.append(frame)
    columns = [id_column, AS_OF, "score", "band"]
    if not frames:
        return pd.DataFrame({c: [] for c in columns})
    return pd.concat(frames, ignore_index=True)[columns]


# ----------------------------------------------------------------------------------------------- alerts


def _band_rank(bands: pd.Series, scale: ScoreBands, what: str) -> pd.Series:
    known = {name: i for i, name in enumerate(scale.names)}
    unknown = sorted(set(bands.dropna()) - set(known))
    if unknown:
        raise DataError(f"{what}: band {unknown[0]!r} is not one of {list(scale.names)}")
    return bands.map(known).astype("float64")


def band_crossings(
    previous: pd.DataFrame,
    current: pd.DataFrame,
    *,
    bands: ScoreBands | None = None,
    id_column: str = "lead_id",
    only_up: bool = False,
) -> pd.DataFrame:
    """Leads whose band changed between two runs: id, from_band, to_band, score_before, score_after, direction.

    `direction` is 'up', 'down' or 'new' (a lead only in `current`; its from_band is missing).
    """
    scale = bands or ScoreBands()
    for frame, what in ((previous, "previous scores"), (current, "current scores")):
        require_columns(frame, [id_column, "score", "band"], source=what)
        if frame[id_column].duplicated().any():
            raise DataError(f"{what}: duplicate {id_column!r} values; compare one run (one as_of) at a time")
    before = previous[[id_column, "band", "score"]].rename(columns={"band": "from_band", "score": "score_before"})
    after = current[[id_column, "band", "score"]].rename(columns={"band": "to_band", "score": "score_after"})
    merged = after.merge(before, on=id_column, how="left")
    rank_from = _band_rank(merged["from_band"], scale, "previous scores")
    rank_to = _band_rank(merged["to_band"], scale, "current scores")
    direction = pd.Series(np.select([rank_from.isna(), rank_to > rank_from, rank_to < rank_from],
                                    ["new", "up", "down"], default=""), dtype="str")
    keep = direction.isin(["up", "new"] if only_up else ["up", "down", "new"]).to_numpy()
    out = merged.assign(direction=direction)[keep]
    columns = [id_column, "from_band", "to_band", "score_before", "score_after", "direction"]
    return out[columns].reset_index(drop=True)


def alerts(
    previous: pd.DataFrame, current: pd.DataFrame, *, bands: ScoreBands | None = None, id_column: str = "lead_id"
) -> pd.DataFrame:
    """Leads that entered the top band (e.g. `sales`) since the previous run, new leads included."""
    scale = bands or ScoreBands()
    moved = band_crossings(previous, current, bands=scale, id_column=id_column, only_up=True)
    return moved[(moved["to_band"] == scale.top).to_numpy()].reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- scorers


class RuleScorer:
    """Manual rules as a `models.scoring.Scorer` (the model's call shape), for side-by-side comparisons."""

    def __init__(
        self, rules: RuleSet, *, id_column: str = "lead_id", event_lead_id: str = "lead_id",
        event_time: str = "timestamp", event_type: str = "event_type", source: str = "leads",
        events_source: str = "events",
    ) -> None:
        self.rules = rules
        self._options = dict(id_column=id_column, event_lead_id=event_lead_id, event_time=event_time,
                             event_type=event_type, source=source, events_source=events_source)

    @classmethod
    def load(cls, path: str | os.PathLike, **options: str) -> RuleScorer:
        """A scorer for the YAML rule file at `path`."""
        return cls(load_rules(path), **options)

    @property
    def bands(self) -> ScoreBands:
        """The rule set's bands."""
        return self.rules.bands

    def score(self, leads: pd.DataFrame, events: pd.DataFrame | None = None,
              as_of: pd.Timestamp | str | None = None, *, reasons: bool = True) -> pd.DataFrame:
        """One row per lead: lead_id, as_of, points_<group>, score, band, reason_1..3."""
        return score_rules(self.rules, leads, events, as_of, reasons=reasons, **self._options)


class ColumnRuleScorer:
    """Manual scores already computed by the CRM (a score column, banded with the same cut-offs), as a `Scorer`."""

    def __init__(self, column: str, bands: ScoreBands | None = None, *, id_column: str = "lead_id",
                 source: str = "leads") -> None:
        self.column = column
        self.bands = bands or ScoreBands()
        self.id_column = id_column
        self.source = source

    def score(self, leads: pd.DataFrame, events: pd.DataFrame | None = None,
              as_of: pd.Timestamp | str | None = None, *, reasons: bool = True) -> pd.DataFrame:
        """One row per lead: lead_id, as_of, score, band. `events` and `reasons` are accepted and unused.

        Non-numeric cells are a DataError; empty cells give a missing score and band.
        """
        require_columns(leads, [self.id_column], source=self.source, what="id")
        require_columns(leads, [self.column], source=self.source, what="score")
        leads = leads.reset_index(drop=True)
        score = _numbers(leads[self.column], self.source, self.column).round(2)
        stamps = _resolve_as_of(leads, as_of, self.source).reset_index(drop=True)
        return pd.DataFrame({self.id_column: leads[self.id_column], AS_OF: stamps, "score": score,
                             "band": self.bands.assign(score)})
