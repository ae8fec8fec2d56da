"""Funnel analytics: pure functions from CRM frames to tables (conversion by channel, pipeline 4V, reverse funnel,
stalled leads, lead SLA, lead grades and lifecycle, channels from landing URLs).

Everything starts from `lead_journeys`, one row per lead with its channel, creation and conversion times and,
when a stage history is given, the time it entered each stage (`srl_at`, `sql_at`, `opportunity_at`, `won_at`,
`lost_at`). Every other function takes that frame (or a frame of the same shape) and returns a new one; nothing
here reads or writes files (see `analytics.report`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from urllib.parse import parse_qsl, urlsplit

import numpy as np
import pandas as pd

from leadscore.features.errors import DataError
from leadscore.features.io import parse_timestamps, require_columns

STAGES: tuple[str, ...] = ("MQL", "SRL", "SQL", "opportunity", "won", "lost")
FUNNEL_STAGES: tuple[str, ...] = ("MQL", "SRL", "SQL", "opportunity", "won")
GRADES: tuple[str, ...] = ("won", "convertible", "invalid", "intent", "nurture")
STAGE_COLUMNS: dict[str, str] = {stage: f"{stage.lower()}_at" for stage in STAGES}
ALL = "all"
MISSING_CHANNEL = "(missing)"
Z95 = 1.959963984540054
_DAY = pd.Timedelta(days=1)
_HOUR = pd.Timedelta(hours=1)
_PIPELINE_COLUMNS = ("team", "landing_url", "handed_over_at", "first_touch_at", "deal_value", "qualified")


# ----------------------------------------------------------------------------------------------- basics


def wilson_interval(successes: np.ndarray | float, trials: np.ndarray | float,
                    z: float = Z95) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval for a binomial proportion (NaN where trials == 0)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(trials, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = k / n
        denom = 1 + z**2 / n
        centre = (p + z**2 / (2 * n)) / denom
        half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denom
        low = np.where(n > 0, np.clip(centre - half, 0.0, 1.0), np.nan)
        high = np.where(n > 0, np.clip(centre + half, 0.0, 1.0), np.nan)
    return low, high


def _rate(successes: pd.Series, trials: pd.Series) -> pd.Series:
    return (successes / trials.where(trials > 0)).astype("float64")


def _days(later: pd.Series, earlier: pd.Series) -> pd.Series:
    return ((later - earlier) / _DAY).astype("float64")


def _resolve_as_of(journeys: pd.DataFrame, as_of: pd.Timestamp | str | None) -> pd.Timestamp:
    if as_of is not None:
        stamp = pd.Timestamp(as_of)
        return stamp.tz_localize("UTC") if stamp.tz is None else stamp.tz_convert("UTC")
    # Without a date the data's own end is "now": the latest time anything happened.
    stamps = [journeys[c].max() for c in journeys.columns
              if isinstance(journeys[c].dtype, pd.DatetimeTZDtype) and journeys[c].notna().any()]
    if not stamps:
        raise DataError("funnel: no timestamps to infer as_of from; pass as_of")
    return max(stamps)


def _stage_cols(journeys: pd.DataFrame) -> list[str]:
    return [STAGE_COLUMNS[s] for s in STAGES if STAGE_COLUMNS[s] in journeys.columns]


def _has_stages(journeys: pd.DataFrame) -> bool:
    return all(STAGE_COLUMNS[s] in journeys.columns for s in STAGES)


def _by_before(journeys: pd.DataFrame, column: str, as_of: pd.Timestamp) -> pd.Series:
    """True where the stage time is known and not after as_of (later facts are not yet visible)."""
    values = journeys[column]
    return (values.notna() & (values <= as_of)).astype(bool)


# ----------------------------------------------------------------------------------------------- journeys


def _lookup_times(keys: pd.Series, values: pd.Series | None) -> pd.Series:
    """Times looked up by id (NaT where absent), always as datetime64[us, UTC]."""
    empty = pd.Series(pd.NaT, index=keys.index, dtype="datetime64[us, UTC]")
    if values is None or values.dropna().empty:
        return empty
    found = values.dropna().astype("datetime64[us, UTC]").reindex(keys.to_numpy())
    return pd.Series(found.to_numpy(), index=keys.index, dtype="datetime64[us, UTC]")


def lead_journeys(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame | None = None,
    stages: pd.DataFrame | None = None,
    pipeline: pd.DataFrame | None = None,
    *,
    id_column: str = "lead_id",
    created_column: str = "created_at",
    channel_column: str | None = "lead_source",
    converted_column: str = "converted_at",
    outcome_id_column: str | None = None,
) -> pd.DataFrame:
    """One row per lead: lead_id, channel, created_at, converted_at (+ <stage>_at, pipeline columns if given).

    Conversion comes from `outcomes[converted_column]` (earliest per lead), else from the stage history's
    opportunity date. Without a channel column the channel is derived from a `landing_url` column if present.
    Stage `stage` values must be among STAGES (case-insensitive); a lead's earliest entry per stage counts.
    """
    require_columns(leads, [id_column, created_column], source="leads")
    out = pd.DataFrame({
        "lead_id": leads[id_column].astype("str").str.strip(),
        "created_at": parse_timestamps(leads[created_column], source="leads", column=created_column,
                                       allow_missing=False),
    })
    if out["lead_id"].duplicated().any():
        raise DataError(f"leads: duplicate ids in column {id_column!r}")
    url_source = None
    if pipeline is not None and "landing_url" in pipeline.columns:
        url_source = pipeline
    elif "landing_url" in leads.columns:
        url_source = leads
    if channel_column is not None and channel_column in leads.columns:
        channel = leads[channel_column].astype("str").str.strip()
        out["channel"] = channel.mask(channel.isin(["", "nan"]) | leads[channel_column].isna(), MISSING_CHANNEL)
    elif url_source is not None:
        parsed = parse_landing_urls(url_source["landing_url"])
        mapped = pd.Series(parsed["channel"].to_numpy(), index=url_source[id_column].astype("str").to_numpy())
        out["channel"] = out["lead_id"].map(mapped).fillna("unknown")
    else:
        raise DataError(f"leads: no channel column {channel_column!r} and no landing_url to derive it from")

    converted = pd.Series(pd.NaT, index=out.index, dtype="datetime64[us, UTC]")
    if outcomes is not None:
        oid = outcome_id_column or id_column
        require_columns(outcomes, [oid], source="outcomes")
        if converted_column in outcomes.columns:
            times = parse_timestamps(outcomes[converted_column], source="outcomes", column=converted_column)
            first = pd.DataFrame({"id": outcomes[oid].astype("str").str.strip(), "t": times}).dropna()
            first = first.groupby("id")["t"].min()
            converted = _lookup_times(out["lead_id"], first)
    if stages is not None:
        require_columns(stages, ["lead_id", "stage", "entered_at"], source="stages")
        names = stages["stage"].astype("str").str.strip()
        lookup = {s.lower(): s for s in STAGES}
        canon = names.str.lower().map(lookup)
        if canon.isna().any():
            bad = sorted(names[canon.isna()].unique().tolist())[:5]
            raise DataError(f"stages: unknown stage names {bad}; expected {list(STAGES)}")
        frame = pd.DataFrame({"id": stages["lead_id"].astype("str").str.strip(), "stage": canon,
                              "t": parse_timestamps(stages["entered_at"], source="stages", column="entered_at")})
        wide = frame.dropna().groupby(["id", "stage"])["t"].min().unstack("stage")
        for stage in STAGES:
            col = STAGE_COLUMNS[stage]
            out[col] = _lookup_times(out["lead_id"], wide[stage] if stage in wide.columns else None)
        out["mql_at"] = out["mql_at"].fillna(out["created_at"])
        if outcomes is None:
            converted = out["opportunity_at"]
    out["converted_at"] = converted
    if pipeline is not None:
        require_columns(pipeline, [id_column], source="pipeline")
        extra = pipeline.assign(_id=pipeline[id_column].astype("str").str.strip()).drop_duplicates("_id")
        extra = extra.set_index("_id")
        for col in _PIPELINE_COLUMNS:
            if col not in extra.columns:
                continue
            values = extra[col]
            if col.endswith("_at"):
                values = parse_timestamps(values, source="pipeline", column=col)
            elif col == "deal_value":
                values = pd.to_numeric(values, errors="coerce").astype("float64")
            out[col] = out["lead_id"].map(values)
    return out


# ----------------------------------------------------------------------------------------------- conversion


def conversion_by_channel(
    journeys: pd.DataFrame,
    *,
    by: str = "channel",
    as_of: pd.Timestamp | str | None = None,
    window_days: float | None = None,
) -> pd.DataFrame:
    """Per channel: leads, conversions, rate with Wilson 95% CI, median days to convert (+ opportunity -> won).

    A lead counts once it was created by `as_of` (default: the data's last timestamp); with `window_days`
    only leads whose window has closed by as_of count, and only conversions within the window. With a stage
    history: opportunities, won, lost, open, win rate (won / closed opportunities), lead -> won and median
    days opportunity -> won. A last row `all` covers every lead.
    """
    when = _resolve_as_of(journeys, as_of)
    frame = journeys[journeys["created_at"] <= when].copy()
    if window_days is not None:
        window = pd.Timedelta(days=window_days)
        frame = frame[frame["created_at"] + window <= when].copy()
    conv_at = frame["converted_at"]
    ok = conv_at.notna() & (conv_at <= when)
    if window_days is not None:
        ok &= conv_at <= frame["created_at"] + pd.Timedelta(days=window_days)
    frame["_converted"] = ok.astype(bool)
    frame["_days"] = _days(conv_at, frame["created_at"]).where(ok)
    stages = _has_stages(frame)
    if stages:
        # Reaching a later stage implies the opportunity, even when the CRM skipped recording it.
        opp = (_by_before(frame, "opportunity_at", when) | _by_before(frame, "won_at", when)
               | _by_before(frame, "lost_at", when))
        frame["_opp"] = opp
        frame["_won"] = opp & _by_before(frame, "won_at", when)
        frame["_lost"] = opp & _by_before(frame, "lost_at", when) & ~frame["_won"]
        frame["_close_days"] = _days(frame["won_at"], frame["opportunity_at"]).where(frame["_won"])
    groups = [(str(name), part) for name, part in frame.groupby(by, sort=False, dropna=False)]
    groups.append((ALL, frame))
    rows = []
    for name, part in groups:
        row = {by: name, "leads": len(part), "converted": int(part["_converted"].sum()),
               "median_days_to_convert": float(part["_days"].median()) if part["_converted"].any() else np.nan}
        if stages:
            row.update(opportunities=int(part["_opp"].sum()), won=int(part["_won"].sum()),
                       lost=int(part["_lost"].sum()),
                       median_days_to_close=float(part["_close_days"].median()) if part["_won"].any() else np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["conversion_rate"] = _rate(table["converted"], table["leads"])
    table["ci_low"], table["ci_high"] = wilson_interval(table["converted"], table["leads"])
    cols = [by, "leads", "converted", "conversion_rate", "ci_low", "ci_high", "median_days_to_convert"]
    if stages:
        table["open"] = table["opportunities"] - table["won"] - table["lost"]
        closed = table["won"] + table["lost"]
        table["win_rate"] = _rate(table["won"], closed)
        table["win_ci_low"], table["win_ci_high"] = wilson_interval(table["won"], closed)
        table["lead_to_won"] = _rate(table["won"], table["leads"])
        table["lead_to_won_ci_low"], table["lead_to_won_ci_high"] = wilson_interval(table["won"], table["leads"])
        cols += ["opportunities", "won", "lost", "open", "win_rate", "win_ci_low", "win_ci_high", "lead_to_won",
                 "lead_to_won_ci_low", "lead_to_won_ci_high", "median_days_to_close"]
    head = table.iloc[:-1].sort_values("conversion_rate", ascending=False, kind="stable")
    return pd.concat([head, table.iloc[-1:]], ignore_index=True)[cols]


def band_conversion(scored: pd.DataFrame, *, band_column: str = "band", label_column: str = "label",
                    order: Sequence[str] | None = None) -> pd.DataFrame:
    """Per score band: leads, conversions, conversion_rate with Wilson 95% CI (input: one row per scored lead)."""
    require_columns(scored, [band_column, label_column], source="scored leads")
    label = pd.to_numeric(scored[label_column], errors="coerce")
    if label.isna().any() or not label.isin([0, 1]).all():
        raise DataError(f"scored leads: column {label_column!r} must be 0/1")
    table = (pd.DataFrame({"band": scored[band_column].astype("str"), "y": label.astype(int)})
             .groupby("band", sort=False)["y"].agg(leads="size", conversions="sum").reset_index())
    if order is not None:
        table = table.set_index("band").reindex([b for b in order if b in set(table["band"])]).reset_index()
    else:
        table = table.sort_values("band", kind="stable").reset_index(drop=True)
    table["conversion_rate"] = _rate(table["conversions"], table["leads"])
    table["ci_low"], table["ci_high"] = wilson_interval(table["conversions"], table["leads"])
    return table


def reverse_funnel(
    revenue_target: float,
    average_deal_value: float,
    rates: pd.DataFrame | Mapping[str, float],
    *,
    name_column: str = "channel",
    rate_column: str = "lead_to_won",
    win_rate: float | None = None,
) -> pd.DataFrame:
    """Leads needed per channel (or band) to reach a revenue target: ceil(ceil(target / deal) / rate).

    `rates` maps a name to its lead -> won rate (a Mapping, or a frame with `name_column` and `rate_column`).
    When the rates are lead -> opportunity (e.g. a model band's conversion rate), pass the opportunity
    `win_rate`: the lead -> won rate is then rate * win_rate and `opportunities_needed` is added.
    """
    if revenue_target <= 0 or average_deal_value <= 0:
        raise DataError("reverse funnel: revenue_target and average_deal_value must be > 0")
    if win_rate is not None and not 0 < win_rate <= 1:
        raise DataError("reverse funnel: win_rate must be in (0, 1]")
    if isinstance(rates, pd.DataFrame):
        require_columns(rates, [name_column, rate_column], source="rates")
        names = rates[name_column].astype("str").tolist()
        values = pd.to_numeric(rates[rate_column], errors="coerce").astype("float64").tolist()
    else:
        names, values = [str(k) for k in rates], [float(v) for v in rates.values()]
    deals = _ceil(revenue_target / average_deal_value)
    rows = []
    for name, rate in zip(names, values, strict=True):
        lead_to_won = rate * (win_rate if win_rate is not None else 1.0)
        ok = math.isfinite(lead_to_won) and lead_to_won > 0
        row = {name_column: name, "rate": rate, "lead_to_won": lead_to_won, "deals_needed": deals,
               "leads_needed": _ceil(deals / lead_to_won) if ok else pd.NA}
        if win_rate is not None:
            row["opportunities_needed"] = _ceil(deals / win_rate)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["leads_needed"] = table["leads_needed"].astype("Int64")
    return table


def _ceil(value: float) -> int:
    # Round-off such as 50 / 0.05 = 1000.0000000001 must not cost a whole extra lead.
    return int(math.ceil(value - 1e-9))


# ----------------------------------------------------------------------------------------------- pipeline (4V)


def pipeline_metrics(journeys: pd.DataFrame, *, freq: str = "M",
                     as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """Pipeline "4 V" per period: volume, value, velocity and conversion.

    Volume and value count what happened in the period: leads created, opportunities opened, won deals, the
    deal value of opportunities opened (pipeline value) and of deals won. Velocity (median days per stage)
    and conversion (stage-to-stage rates) follow the cohort of leads created in the period. Win rate is
    won / closed opportunities. Stage columns that are absent give NaN.
    """
    when = _resolve_as_of(journeys, as_of)
    frame = journeys[journeys["created_at"] <= when].copy()

    def period(values: pd.Series) -> pd.Series:
        return values.dt.tz_convert(None).dt.to_period(freq).astype("str")

    frame["_period"] = period(frame["created_at"])
    opp_col = "opportunity_at" if "opportunity_at" in frame.columns else "converted_at"
    reached = {
        "mql": pd.Series(True, index=frame.index),
        "srl": _by_before(frame, "srl_at", when) if "srl_at" in frame else None,
        "sql": _by_before(frame, "sql_at", when) if "sql_at" in frame else None,
        "opportunity": _by_before(frame, opp_col, when),
        "won": _by_before(frame, "won_at", when) if "won_at" in frame else None,
        "lost": _by_before(frame, "lost_at", when) if "lost_at" in frame else None,
    }
    cohort = frame.groupby("_period")
    out = pd.DataFrame({"leads": cohort.size()})
    pairs = [("mql", "srl"), ("srl", "sql"), ("sql", "opportunity"), ("opportunity", "won")]
    starts = {"mql": "created_at", "srl": "srl_at", "sql": "sql_at", "opportunity": opp_col}
    for a, b in pairs:
        if reached[a] is None or reached[b] is None:
            out[f"rate_{a}_{b}"] = np.nan
            out[f"days_{a}_{'close' if b == 'won' else b}"] = np.nan
            continue
        if b == "won":
            closed = reached["won"] | (reached["lost"] if reached["lost"] is not None else False)
            base, hit = reached[a] & closed, reached[a] & reached["won"]
            end = frame["won_at"].where(reached["won"]).fillna(frame["lost_at"] if "lost_at" in frame else pd.NaT)
            days = _days(end, frame[opp_col]).where(closed & reached[a])
        else:
            base, hit = reached[a], reached[a] & reached[b]
            end_col = starts[b]
            days = _days(frame[end_col], frame[starts[a]]).where(hit)
        out[f"rate_{a}_{b}"] = _rate(hit.groupby(frame["_period"]).sum(), base.groupby(frame["_period"]).sum())
        # Days to the close (won or lost) for the last step: a lost deal also ends the stage.
        out[f"days_{a}_{'close' if b == 'won' else b}"] = days.groupby(frame["_period"]).median()
    opened = frame[reached["opportunity"]]
    out["opportunities"] = opened.groupby(period(opened[opp_col])).size()
    if "deal_value" in frame.columns:
        out["pipeline_value"] = opened.groupby(period(opened[opp_col]))["deal_value"].sum()
    if reached["won"] is not None:
        won = frame[reached["won"]]
        out["won"] = won.groupby(period(won["won_at"])).size()
        if "deal_value" in frame.columns:
            out["won_value"] = won.groupby(period(won["won_at"]))["deal_value"].sum()
    for col in ("opportunities", "pipeline_value", "won", "won_value"):
        if col in out.columns:
            out[col] = out[col].fillna(0)
            if col in ("opportunities", "won"):
                out[col] = out[col].astype("int64")
    out.index.name = "period"
    order = ["leads", "opportunities", "won", "pipeline_value", "won_value"]
    cols = [c for c in order if c in out.columns] + [c for c in out.columns if c.startswith("days_")] + [
        c for c in out.columns if c.startswith("rate_")]
    return out[cols].reset_index()


# ----------------------------------------------------------------------------------------------- lifecycle


def lifecycle_funnel(journeys: pd.DataFrame, *, as_of: pd.Timestamp | str | None = None) -> pd.DataFrame:
    """MQL -> SRL -> SQL -> opportunity -> won: leads reaching each stage (or a later one) and pair rates.

    The won step is measured on closed opportunities (won or lost), so open deals do not dilute it; the
    `base` column says what each rate divides by. Rates come with Wilson 95% intervals.
    """
    if not _has_stages(journeys):
        raise DataError("lifecycle funnel: needs a stage history (stages frame)")
    when = _resolve_as_of(journeys, as_of)
    frame = journeys[journeys["created_at"] <= when]
    hit = {s: _by_before(frame, STAGE_COLUMNS[s], when) for s in STAGES}
    hit["MQL"] = pd.Series(True, index=frame.index)
    # Reaching a later stage implies the earlier ones even if the CRM skipped a step.
    reached: dict[str, pd.Series] = {}
    later = hit["won"] | hit["lost"]
    for stage in ("opportunity", "SQL", "SRL", "MQL"):
        later = later | hit[stage]
        reached[stage] = later
    reached["won"] = hit["won"]
    closed = hit["won"] | hit["lost"]
    rows = []
    previous = None
    for stage in FUNNEL_STAGES:
        count = int(reached[stage].sum())
        if previous is None:
            base, base_name = count, "leads"
        elif stage == "won":
            base, base_name = int((reached["opportunity"] & closed).sum()), "closed opportunities"
        else:
            base, base_name = int(reached[previous].sum()), previous
        rows.append({"stage": stage, "leads": count, "base": base_name, "base_leads": base})
        previous = stage
    table = pd.DataFrame(rows)
    table["rate_from_previous"] = _rate(table["leads"], table["base_leads"])
    table["ci_low"], table["ci_high"] = wilson_interval(table["leads"], table["base_leads"])
    table["rate_from_first"] = table["leads"] / max(len(frame), 1)
    return table


def lead_grades(
    journeys: pd.DataFrame,
    events: pd.DataFrame | None = None,
    *,
    as_of: pd.Timestamp | str | None = None,
    invalid_events: Iterable[str] = ("email_bounce", "unsubscribe"),
    intent_events: Iterable[str] = ("demo_request", "pricing_page_view", "form_submit"),
    intent_days: float = 30.0,
    event_columns: tuple[str, str, str] = ("lead_id", "timestamp", "event_type"),
) -> pd.DataFrame:
    """Grade each lead as of a date: won / convertible / invalid / intent / nurture (first that applies).

    won: a won deal; convertible: in open sales pipeline (SQL or opportunity, not closed; without stages, not
    used); invalid: a bounce or unsubscribe (cannot be reached); intent: an intent event in the last
    `intent_days`; nurture: everyone else, lost deals included (recycled to marketing).
    """
    when = _resolve_as_of(journeys, as_of)
    frame = journeys.loc[journeys["created_at"] <= when, ["lead_id", "channel"]].copy()
    view = journeys.loc[frame.index]
    grade = pd.Series("nurture", index=frame.index, dtype="object")
    if events is not None:
        lid, ts, et = event_columns
        require_columns(events, [lid, ts, et], source="events")
        ev = pd.DataFrame({"id": events[lid].astype("str").str.strip(),
                           "t": parse_timestamps(events[ts], source="events", column=ts),
                           "type": events[et].astype("str").str.strip()})
        ev = ev[ev["t"] <= when]
        recent = ev[(ev["t"] > when - pd.Timedelta(days=intent_days)) & ev["type"].isin(list(intent_events))]
        grade[frame["lead_id"].isin(recent["id"]).to_numpy()] = "intent"
        bad = ev.loc[ev["type"].isin(list(invalid_events)), "id"]
        grade[frame["lead_id"].isin(bad).to_numpy()] = "invalid"
    if _has_stages(journeys):
        closed = _by_before(view, "won_at", when) | _by_before(view, "lost_at", when)
        pipeline = (_by_before(view, "sql_at", when) | _by_before(view, "opportunity_at", when)) & ~closed
        grade[pipeline.to_numpy()] = "convertible"
        grade[_by_before(view, "won_at", when).to_numpy()] = "won"
    frame["grade"] = pd.Series(grade.to_numpy(), index=frame.index, dtype="str")
    return frame.reset_index(drop=True)


def grade_summary(grades: pd.DataFrame, *, by: str | None = None) -> pd.DataFrame:
    """Leads and share per grade (in GRADES order), optionally per `by` column (e.g. channel)."""
    keys = [by, "grade"] if by else ["grade"]
    table = grades.groupby(keys, sort=False).size().rename("leads").reset_index()
    total = table.groupby(by)["leads"].transform("sum") if by else table["leads"].sum()
    table["share"] = table["leads"] / total
    table["_order"] = table["grade"].map({g: i for i, g in enumerate(GRADES)})
    sort = [by, "_order"] if by else ["_order"]
    return table.sort_values(sort, kind="stable").drop(columns="_order").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- operations


def stalled_leads(
    journeys: pd.DataFrame,
    *,
    as_of: pd.Timestamp | str | None = None,
    factor: float = 2.0,
    cycle_days: float | None = None,
    statistic: str = "median",
) -> pd.DataFrame:
    """Open leads (not converted, not lost by as_of) older than `factor` x the cycle, to recycle to nurture.

    The cycle is the median (or mean, `statistic="mean"`) days from creation to conversion among leads
    converted by as_of, unless `cycle_days` is given. Oldest first.
    """
    if statistic not in ("median", "mean"):
        raise DataError("stalled leads: statistic must be 'median' or 'mean'")
    when = _resolve_as_of(journeys, as_of)
    frame = journeys[journeys["created_at"] <= when]
    converted = _by_before(frame, "converted_at", when)
    if "opportunity_at" in frame.columns:
        converted |= _by_before(frame, "opportunity_at", when)
    lost = _by_before(frame, "lost_at", when) if "lost_at" in frame.columns else pd.Series(False, index=frame.index)
    if cycle_days is None:
        cycle = _days(frame["converted_at"], frame["created_at"])[converted]
        if cycle.dropna().empty:
            raise DataError("stalled leads: no converted lead to measure the cycle on; pass cycle_days")
        cycle_days = float(cycle.median() if statistic == "median" else cycle.mean())
    age = (when - frame["created_at"]) / _DAY
    threshold = factor * cycle_days
    keep = ~converted & ~lost & (age > threshold)
    out = frame.loc[keep, ["lead_id", "channel", "created_at"]].copy()
    out["stage"] = _current_stage(frame.loc[keep], when)
    out["age_days"] = age[keep].astype("float64")
    out["cycle_days"] = cycle_days
    out["threshold_days"] = threshold
    out["action"] = "recycle to nurture"
    return out.sort_values("age_days", ascending=False, kind="stable").reset_index(drop=True)


def _current_stage(frame: pd.DataFrame, when: pd.Timestamp) -> pd.Series:
    stage = pd.Series("MQL", index=frame.index, dtype="object")
    for name in STAGES[1:]:
        col = STAGE_COLUMNS[name]
        if col in frame.columns:
            stage[_by_before(frame, col, when)] = name
    return stage.astype("str")


def lead_sla(
    journeys: pd.DataFrame,
    *,
    window_hours: float = 24.0,
    as_of: pd.Timestamp | str | None = None,
    team_column: str = "team",
    handover_column: str = "handed_over_at",
    touch_column: str = "first_touch_at",
) -> pd.DataFrame:
    """Per handed-over lead: hours from hand-over (SRL) to the first sales touch and the SLA status.

    status: `within` (touched inside the window), `late` (touched after it), `breaching` (no touch yet and the
    window has passed: act now), `pending` (no touch yet, window still open). Touches after as_of are not yet
    known. Without a `handed_over_at` column the SRL stage time is used.
    """
    when = _resolve_as_of(journeys, as_of)
    handover = handover_column if handover_column in journeys.columns else "srl_at"
    require_columns(journeys, ["lead_id", handover, touch_column], source="journeys")
    frame = journeys[_by_before(journeys, handover, when)]
    team = frame[team_column].astype("str") if team_column in frame.columns else pd.Series("all", index=frame.index)
    touch = frame[touch_column].where(_by_before(frame, touch_column, when))
    hours = ((touch - frame[handover]) / _HOUR).astype("float64")
    waited = ((when - frame[handover]) / _HOUR).astype("float64")
    window = float(window_hours)
    status = np.select(
        [touch.notna() & (hours <= window), touch.notna(), waited > window],
        ["within", "late", "breaching"], default="pending")
    out = pd.DataFrame({
        "lead_id": frame["lead_id"], "team": team, "handed_over_at": frame[handover], "first_touch_at": touch,
        "hours_to_touch": hours, "hours_waiting": waited.where(touch.isna()), "status": status,
    })
    out["status"] = out["status"].astype("str")
    out["breaching_now"] = out["status"] == "breaching"
    out["window_hours"] = window
    return out.reset_index(drop=True)


def sla_by_team(per_lead: pd.DataFrame) -> pd.DataFrame:
    """Per team (and `all`): hand-overs, median hours to touch, counts per status, share inside the window.

    share_within = within / (within + late + breaching): leads whose window is still open are left out.
    """
    parts = [(str(team), part) for team, part in per_lead.groupby("team", sort=True)]
    parts.append((ALL, per_lead))
    rows = []
    for team, part in parts:
        counts = part["status"].value_counts()
        row = {"team": team, "handovers": len(part), "touched": int(part["first_touch_at"].notna().sum()),
               "median_hours_to_touch": float(part["hours_to_touch"].median())}
        for status in ("within", "late", "breaching", "pending"):
            row[status] = int(counts.get(status, 0))
        rows.append(row)
    table = pd.DataFrame(rows)
    decided = table["within"] + table["late"] + table["breaching"]
    table["share_within"] = _rate(table["within"], decided)
    table["ci_low"], table["ci_high"] = wilson_interval(table["within"], decided)
    return table


def sla_breaches(per_lead: pd.DataFrame) -> pd.DataFrame:
    """Leads breaching the SLA now (handed over, no touch, window passed), longest waiting first."""
    out = per_lead[per_lead["breaching_now"]]
    return out.sort_values("hours_waiting", ascending=False, kind="stable").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------- landing URLs

UTM_KEYS: tuple[str, ...] = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")
CUSTOM_KEYS: tuple[str, ...] = ("x_field_1",)
CUSTOM_CHANNELS: dict[str, str] = {"tbbanner": "trade_show", "booth": "trade_show", "tradeshow": "trade_show"}
SOURCE_CHANNELS: dict[str, str] = {
    "list_vendor": "purchased_list", "datalist": "purchased_list", "purchased_list": "purchased_list",
    "linkedin": "social_media", "facebook": "social_media", "twitter": "social_media", "instagram": "social_media",
}
MEDIUM_CHANNELS: dict[str, str] = {
    "cpc": "paid_search", "ppc": "paid_search", "paid_search": "paid_search", "sem": "paid_search",
    "organic": "organic_search", "seo": "organic_search",
    "social": "social_media", "paid_social": "social_media", "social_media": "social_media",
    "email": "email_campaign", "newsletter": "email_campaign", "cold_email": "purchased_list",
    "webinar": "webinar", "event": "trade_show", "trade_show": "trade_show", "tradeshow": "trade_show",
    "referral": "referral", "partner": "referral", "affiliate": "referral",
}
DIRECT_CHANNEL = "company_website"
UNKNOWN_CHANNEL = "unknown"


def _parse_url(value: object) -> dict[str, str | None]:
    if not isinstance(value, str):
        return {}
    text = value.strip().replace("&amp;", "&")
    if not text or text.lower() in ("nan", "none", "null", "(not set)"):
        return {}
    if "://" not in text and not text.startswith("//") and not text.startswith("?"):
        text = "//" + text  # "example.com/x?utm_source=a": no scheme, still a host
    try:
        parts = urlsplit(text)
        host = (parts.hostname or "").removeprefix("www.")
    except ValueError:
        return {"valid": "false"}
    query = parts.query
    if not query and "?" in parts.fragment:
        query = parts.fragment.split("?", 1)[1]  # single-page apps put the query after '#/'
    params: dict[str, str | None] = {}
    for key, val in parse_qsl(query, keep_blank_values=True):
        key = key.strip().lower()
        if key and key not in params:
            params[key] = val.strip().lower() or None
    valid = bool(host) and "." in host and " " not in host
    # Tracking keys with blank values still mean "tagged traffic", so such a URL is not a direct visit.
    tagged = any(k.startswith(("utm_", "x_field")) for k in params)
    return {"valid": "true" if valid or params else "false", "host": host or None, "path": parts.path or None,
            "has_ref": "true" if "ref" in params else None, "tagged": "true" if tagged else None, **params}


def channel_from_utm(parsed: pd.DataFrame, *, source_channels: Mapping[str, str] | None = None,
                     medium_channels: Mapping[str, str] | None = None,
                     custom_channels: Mapping[str, str] | None = None) -> pd.Series:
    """Channel name from parsed URL columns: custom field, then utm_source, then utm_medium, else direct/unknown.

    A URL with a host but no tracking parameter is a direct visit (`company_website`); a missing or garbled
    URL is `unknown`. The mappings extend (and override) SOURCE_CHANNELS, MEDIUM_CHANNELS and CUSTOM_CHANNELS.
    """
    src = {**SOURCE_CHANNELS, **(source_channels or {})}
    med = {**MEDIUM_CHANNELS, **(medium_channels or {})}
    cus = {**CUSTOM_CHANNELS, **(custom_channels or {})}
    channel = pd.Series(pd.NA, index=parsed.index, dtype="object")
    tracked = pd.Series(False, index=parsed.index)
    for key in (*UTM_KEYS, *CUSTOM_KEYS, "tagged"):
        if key in parsed.columns:
            tracked |= parsed[key].notna()
    steps = [("x_field_1", cus), ("utm_source", src), ("utm_medium", med)]
    for column, mapping in steps:
        if column in parsed.columns:
            channel = channel.fillna(parsed[column].map(mapping))
    if "has_ref" in parsed.columns:
        channel = channel.mask(channel.isna() & parsed["has_ref"].notna(), "referral")
    direct = channel.isna() & ~tracked & parsed["host"].notna() & parsed["valid"]
    channel = channel.mask(direct, DIRECT_CHANNEL)
    return channel.fillna(UNKNOWN_CHANNEL).astype("str")


def parse_landing_urls(urls: pd.Series | Sequence[object], **mappings: Mapping[str, str]) -> pd.DataFrame:
    """One row per URL: landing_url, valid, host, path, utm_* fields, x_field_1 and the mapped channel.

    Keys are matched case-insensitively, values are percent-decoded and lower-cased ('+' is a space);
    missing, empty or garbled URLs give empty fields and channel `unknown`. `mappings` go to channel_from_utm.
    """
    series = urls if isinstance(urls, pd.Series) else pd.Series(list(urls), dtype="object")
    parsed = [_parse_url(v) for v in series.astype("object").where(series.notna(), None)]
    columns = ["host", "path", *UTM_KEYS, *CUSTOM_KEYS, "has_ref", "tagged"]
    table = pd.DataFrame({c: [p.get(c) for p in parsed] for c in columns}, index=series.index, dtype="object")
    table["valid"] = pd.Series([p.get("valid") == "true" for p in parsed], index=series.index, dtype=bool)
    table["channel"] = channel_from_utm(table, **mappings)
    table.insert(0, "landing_url", series.astype("object"))
    for col in ["landing_url", "host", "path", *UTM_KEYS, *CUSTOM_KEYS, "channel"]:
        table[col] = table[col].astype("str")
    return table.drop(columns=["has_ref", "tagged"]).reset_index(drop=True)
