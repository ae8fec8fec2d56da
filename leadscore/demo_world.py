"""A seeded synthetic B2B CRM world ("demo world") with a known true conversion probability.

The world looks like a CRM export (leads, events, outcomes) and keeps the ground truth aside: for every
lead that has not converted before its scoring time `as_of`, `true_probability` is a deterministic function
of what is observable at `as_of` (firmographics as stored, events with timestamp <= as_of). A perfect
point-in-time model therefore reaches the truth exactly, while a leaky pipeline that uses post-as_of events
looks far too good (converters deliberately get extra activity after as_of).

Everything is vectorised numpy; ids and text columns are built through pyarrow so a million leads with
their events stay fast. Times are handled internally as int64 seconds since the epoch (UTC).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from leadscore.features.io import write_table

EVENT_TYPES: tuple[str, ...] = (
    "page_view",
    "pricing_page_view",
    "email_open",
    "email_click",
    "form_submit",
    "content_download",
    "webinar_attended",
    "livestream_watched",
    "offline_event_attended",
    "demo_request",
    "unsubscribe",
    "email_bounce",
)

_DAY = 86_400
_N_TYPES = len(EVENT_TYPES)
_T = {name: i for i, name in enumerate(EVENT_TYPES)}
_STR = pd.StringDtype("pyarrow", na_value=np.nan)  # the pandas 3 default "str" dtype

# (name, share, logit effect). Effects are the ground truth; shares make the export look realistic.
_INDUSTRIES = (
    ("software", 0.20, 0.45),
    ("manufacturing", 0.13, 0.10),
    ("financial_services", 0.11, 0.25),
    ("healthcare", 0.10, 0.00),
    ("retail", 0.10, -0.25),
    ("education", 0.08, -0.45),
    ("logistics", 0.08, 0.05),
    ("media", 0.07, -0.10),
    ("public_sector", 0.07, -0.55),
    ("energy", 0.06, 0.15),
)
_COUNTRIES = (
    ("US", 0.34, 0.10),
    ("GB", 0.10, 0.05),
    ("DE", 0.09, 0.05),
    ("FR", 0.07, -0.05),
    ("NL", 0.05, 0.10),
    ("ES", 0.04, -0.15),
    ("IT", 0.04, -0.15),
    ("CA", 0.06, 0.05),
    ("AU", 0.05, 0.00),
    ("IN", 0.08, -0.30),
    ("BR", 0.04, -0.25),
    ("SG", 0.04, 0.05),
)
_SOURCES = (
    ("referral", 0.07, 1.00),
    ("company_website", 0.16, 0.75),
    ("organic_search", 0.17, 0.30),
    ("paid_search", 0.14, 0.15),
    ("webinar", 0.09, 0.10),
    ("trade_show", 0.07, 0.00),
    ("social_media", 0.10, -0.25),
    ("email_campaign", 0.12, -0.75),
    ("purchased_list", 0.08, -1.15),
)
_SOURCE_CODE = {row[0]: i for i, row in enumerate(_SOURCES)}
_SENIORITIES = ("c_level", "vp", "director", "manager", "individual_contributor", "student")
_SENIORITY_EFFECT = np.array([0.20, 0.65, 0.60, 0.30, -0.25, -2.20])
_SENIORITY_MISSING_EFFECT = -0.30
# Pricing interest only means buying power from managers upwards.
_SENIOR_ENOUGH = np.array([True, True, True, True, False, False])
_TITLES = (
    ("CEO", 0, 0.020),
    ("CTO", 0, 0.015),
    ("CMO", 0, 0.010),
    ("Founder", 0, 0.015),
    ("VP Marketing", 1, 0.030),
    ("VP Sales", 1, 0.030),
    ("VP Engineering", 1, 0.020),
    ("VP Operations", 1, 0.015),
    ("Head of Sales", 2, 0.030),
    ("Head of Marketing", 2, 0.030),
    ("Director of IT", 2, 0.030),
    ("Marketing Director", 2, 0.030),
    ("Director of Finance", 2, 0.020),
    ("Marketing Manager", 3, 0.070),
    ("Sales Manager", 3, 0.060),
    ("IT Manager", 3, 0.050),
    ("Product Manager", 3, 0.050),
    ("Operations Manager", 3, 0.040),
    ("Software Engineer", 4, 0.090),
    ("Data Analyst", 4, 0.060),
    ("Marketing Specialist", 4, 0.060),
    ("Sales Representative", 4, 0.050),
    ("Accountant", 4, 0.040),
    ("Consultant", 4, 0.050),
    ("Student", 5, 0.060),
    ("Intern", 5, 0.025),
)

# Expected lifetime event counts per type for an average lead, and how strongly intent drives each.
_BASE_RATE = np.array([6.0, 1.0, 5.0, 1.4, 0.6, 0.8, 0.35, 0.3, 0.08, 0.10, 0.12, 0.10])
_INTENT_SLOPE = np.array([0.7, 1.0, 0.35, 0.8, 0.9, 0.8, 0.8, 0.6, 0.9, 1.3, -0.8, 0.0])
# Ground-truth weights on log1p(count before as_of).
_ENGAGEMENT_WEIGHT = np.array([0.18, 0.0, 0.04, 0.22, 0.35, 0.30, 0.35, 0.15, 0.55, 1.10, -1.30, -1.60])
_PRICING_WEIGHT_SENIOR = 0.75
_PRICING_WEIGHT_JUNIOR = 0.05
# Extra activity of converters after as_of (sales cycle): page, pricing, click, form, demo, offline.
_POST_TYPES = np.array([_T["page_view"], _T["pricing_page_view"], _T["email_click"], _T["form_submit"],
                        _T["demo_request"], _T["offline_event_attended"], _T["email_open"]])
_POST_SHARES = np.array([0.35, 0.20, 0.12, 0.08, 0.07, 0.04, 0.14])

_TARGET_MEAN = 0.13


@dataclass(frozen=True)
class DemoWorld:
    """A synthetic CRM export plus its ground truth (kept in `truth` / `fresh_truth`)."""

    leads: pd.DataFrame
    events: pd.DataFrame
    outcomes: pd.DataFrame
    truth: pd.DataFrame
    fresh_leads: pd.DataFrame
    fresh_events: pd.DataFrame
    fresh_truth: pd.DataFrame
    data_end: pd.Timestamp
    as_of_days: int
    label_window_days: int
    stages: pd.DataFrame | None = None
    pipeline: pd.DataFrame | None = None


@dataclass
class _Sim:
    leads: pd.DataFrame
    events: pd.DataFrame
    converted_at: np.ndarray  # int64 seconds, -1 when never (or not yet seen)
    as_of: np.ndarray  # int64 seconds
    prob: np.ndarray  # NaN for early converters
    early: np.ndarray
    intercept: float


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _pick(rng: np.random.Generator, table: tuple, n: int, missing: float) -> np.ndarray:
    """Category codes drawn by share; -1 marks a missing cell."""
    shares = np.array([row[1] for row in table], dtype=float)
    codes = rng.choice(len(table), size=n, p=shares / shares.sum())
    return np.where(rng.random(n) < missing, -1, codes)


def _effect(codes: np.ndarray, effects: np.ndarray, missing_effect: float) -> np.ndarray:
    return np.where(codes >= 0, effects[np.maximum(codes, 0)], missing_effect)


def _text(codes: np.ndarray, names: tuple[str, ...] | list[str]) -> pd.Series:
    """String column from codes (-1 -> missing) without building a Python object per row."""
    indices = pa.array(codes.astype(np.int32), mask=codes < 0)
    dictionary = pa.array(list(names), type=pa.string())
    values = pa.DictionaryArray.from_arrays(indices, dictionary).cast(pa.string())
    return pd.Series(pd.array(values, dtype=_STR))


def _ids(prefix: str, numbers: np.ndarray, width: int) -> pa.Array:
    """'L0000001'-style ids: digits are assembled as bytes, so lexical order equals numeric order."""
    digits = (numbers[:, None] // 10 ** np.arange(width - 1, -1, -1, dtype=np.int64)) % 10 + ord("0")
    raw = np.empty((len(numbers), len(prefix) + width), dtype=np.uint8)
    raw[:, : len(prefix)] = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    raw[:, len(prefix) :] = digits
    fixed = raw.view(f"S{raw.shape[1]}").ravel()
    return pa.array(fixed, type=pa.binary()).cast(pa.string())


def _times(seconds: np.ndarray) -> pd.Series:
    """int64 epoch seconds (-1 = missing) -> datetime64[us, UTC]."""
    micros = seconds.astype(np.int64) * 1_000_000
    values = micros.view("M8[us]").copy()
    values[seconds < 0] = np.datetime64("NaT")
    return pd.Series(values).dt.tz_localize("UTC")


def _firmographics(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    employees = np.clip(np.rint(rng.lognormal(np.log(120), 1.9, n)), 1, 100_000).astype(np.int64)
    # Revenue per employee varies by company; ~5% of revenues are missing in the export.
    revenue = employees * np.exp(rng.normal(np.log(180_000), 0.55, n))
    revenue = np.where(rng.random(n) < 0.05, np.nan, np.round(revenue, -3))
    multinational = rng.random(n) < _sigmoid(-5.0 + 0.75 * np.log(employees))
    title_shares = np.array([t[2] for t in _TITLES])
    title = rng.choice(len(_TITLES), size=n, p=title_shares / title_shares.sum())
    title_seniority = np.array([t[1] for t in _TITLES])
    seniority = np.where(rng.random(n) < 0.03, -1, title_seniority[title])
    return {
        "company": rng.integers(0, 1_000_000, n),
        "industry": _pick(rng, _INDUSTRIES, n, 0.04),
        "employees": employees,
        "annual_revenue": revenue,
        "country": _pick(rng, _COUNTRIES, n, 0.03),
        "is_multinational": multinational,
        "title": title,
        "seniority": seniority,
        "source": _pick(rng, _SOURCES, n, 0.0),
    }


def _fit_score(firm: dict[str, np.ndarray]) -> np.ndarray:
    """Observable firmographic part of the true logit (uses the columns as stored, gaps included)."""
    log_emp = np.log10(firm["employees"])
    # Mid-market sweet spot around 200-1000 employees; tiny and huge companies convert worse.
    size = 0.45 - 0.45 * ((log_emp - 2.6) / 0.9) ** 2
    fit = (
        _effect(firm["source"], np.array([r[2] for r in _SOURCES]), 0.0)
        + _effect(firm["seniority"], _SENIORITY_EFFECT, _SENIORITY_MISSING_EFFECT)
        + _effect(firm["industry"], np.array([r[2] for r in _INDUSTRIES]), -0.20)
        + _effect(firm["country"], np.array([r[2] for r in _COUNTRIES]), -0.10)
        + np.maximum(size, -1.2)
        + 0.25 * firm["is_multinational"]
        - 0.10 * np.isnan(firm["annual_revenue"])
    )
    return fit


def _draw_events(
    rng: np.random.Generator,
    created: np.ndarray,
    fit: np.ndarray,
    source: np.ndarray,
    intent: np.ndarray,
    data_end: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lifetime events per lead: (lead index, type code, epoch seconds), unsorted, none after data_end."""
    n = len(created)
    # Good-fit leads engage a bit more; bad-quality lists bounce more (bounce driven by the source).
    activity = np.exp(0.15 * np.clip(fit, -2, 2))
    rates = _BASE_RATE[None, :] * np.exp(_INTENT_SLOPE[None, :] * intent[:, None]) * activity[:, None]
    bought = np.isin(source, [_SOURCE_CODE["purchased_list"], _SOURCE_CODE["email_campaign"]])
    rates[:, _T["email_bounce"]] *= np.where(bought, 3.0, 0.6)
    counts = rng.poisson(rates).astype(np.int64)
    per_cell = counts.ravel()
    total = int(per_cell.sum())
    lead = np.repeat(np.repeat(np.arange(n, dtype=np.int64), _N_TYPES), per_cell)
    etype = np.repeat(np.tile(np.arange(_N_TYPES, dtype=np.int8), n), per_cell)
    # Engagement decays after creation with a lead-specific time scale: some go quiet within days,
    # others stay active for weeks; a quarter of events come from a slow background tail.
    tau = rng.lognormal(np.log(7.0), 1.1, n)
    slow = rng.random(total) < 0.25
    scale = np.where(slow, 150.0, tau[lead]) * _DAY
    offset = np.rint(rng.exponential(1.0, total) * scale).astype(np.int64) + 1
    when = created[lead] + offset
    keep = when <= data_end
    return lead[keep], etype[keep], when[keep]


def _features_at(
    n: int, lead: np.ndarray, etype: np.ndarray, when: np.ndarray, as_of: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-type counts before as_of and in its last 7 days; days since the last event (inf if none)."""
    before = when <= as_of[lead]
    lb, tb, wb = lead[before], etype[before], when[before]
    counts = np.bincount(lb * _N_TYPES + tb, minlength=n * _N_TYPES).reshape(n, _N_TYPES)
    recent = wb > as_of[lb] - 7 * _DAY
    counts7 = np.bincount(lb[recent] * _N_TYPES + tb[recent], minlength=n * _N_TYPES).reshape(n, _N_TYPES)
    last = np.full(n, np.iinfo(np.int64).min)
    # Latest event per lead without a Python loop: sort by (lead, time) and take each lead's last row.
    order = np.lexsort((wb, lb))
    ls, ws = lb[order], wb[order]
    if len(ls):
        ends = np.flatnonzero(np.r_[ls[1:] != ls[:-1], True])
        last[ls[ends]] = ws[ends]
    silence = np.where(last > np.iinfo(np.int64).min, (as_of - last) / _DAY, np.inf)
    return counts, counts7, silence


def _engagement_logit(
    fit: np.ndarray, seniority: np.ndarray, counts: np.ndarray, counts7: np.ndarray, silence: np.ndarray
) -> np.ndarray:
    """Logit without intercept: firmographic fit, saturating engagement, recency and interactions."""
    logc = np.log1p(counts)
    weights = np.broadcast_to(_ENGAGEMENT_WEIGHT, counts.shape).copy()
    senior = np.where(seniority >= 0, _SENIOR_ENOUGH[np.maximum(seniority, 0)], False)
    weights[:, _T["pricing_page_view"]] = np.where(senior, _PRICING_WEIGHT_SENIOR, _PRICING_WEIGHT_JUNIOR)
    engagement = (weights * logc).sum(axis=1)
    # Positive engagement of the last 7 days counts on top of the total (recent intent is hotter).
    recent = (np.clip(_ENGAGEMENT_WEIGHT, 0, None) * np.log1p(counts7)).sum(axis=1)
    # Engagement is worth far more for good-fit leads (the classic fit x interest grid): a student from a
    # bought list who reads every email is still unlikely to buy.
    fit_gate = 0.2 + 1.6 * _sigmoid(2.5 * (fit - 0.3))
    # Long silence before as_of cools a lead down; no activity at all is worst.
    cooling = -0.9 * np.clip((silence - 5.0) / 10.0, 0.0, 1.5)
    cooling = np.where(np.isinf(silence), -1.6, cooling)
    return 1.1 * fit + fit_gate * (engagement + 0.9 * recent) + cooling


def _calibrate(raw: np.ndarray, target: float) -> float:
    """Intercept so that mean(sigmoid(raw + b)) == target; vectorised bisection on the mean."""
    lo, hi = -20.0, 20.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if _sigmoid(raw + mid).mean() > target:
            hi = mid
        else:
            lo = mid
    return 0.5 * (lo + hi)


def _sorted_events(
    lead: np.ndarray, etype: np.ndarray, when: np.ndarray, origin: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by (lead, time, type) with one int64 key sort instead of a multi-key lexsort."""
    rel = when - origin
    time_bits = max(int(rel.max()).bit_length(), 1) if len(rel) else 1
    key = (lead << (time_bits + 4)) | (rel << 4) | etype.astype(np.int64)
    key.sort()
    mask_t = (1 << time_bits) - 1
    return key >> (time_bits + 4), ((key >> 4) & mask_t) + origin, (key & 15).astype(np.int8)


def _simulate(
    rng: np.random.Generator,
    created: np.ndarray,
    data_end: int,
    prefix: str,
    as_of_days: int,
    label_window_days: int,
    intercept: float | None,
) -> _Sim:
    """Leads, events, truth and outcomes for leads created at `created` (epoch seconds)."""
    n = len(created)
    firm = _firmographics(rng, n)
    fit = _fit_score(firm)
    intent = rng.normal(0.0, 1.0, n)
    lead, etype, when = _draw_events(rng, created, fit, firm["source"], intent, data_end)
    as_of = created + as_of_days * _DAY

    counts, counts7, silence = _features_at(n, lead, etype, when, as_of)
    raw = _engagement_logit(fit, firm["seniority"], counts, counts7, silence)

    # Early converters (a few percent): hot leads that buy before as_of, far more often after a demo request.
    demo = counts[:, _T["demo_request"]] > 0
    early = rng.random(n) < _sigmoid(-4.4 + 2.2 * demo + 0.5 * intent + 0.3 * fit)
    if intercept is None:
        intercept = _calibrate(raw[~early], _TARGET_MEAN)
    prob = np.where(early, np.nan, _sigmoid(raw + intercept))

    label = ~early & (rng.random(n) < np.nan_to_num(prob))
    window = label_window_days * _DAY
    # Positive delay in (0, window]: gamma-ish with median ~35 days; tail redrawn inside the window.
    delay = rng.gamma(2.0, 21.0, n) * _DAY
    delay = np.where(delay > window, rng.uniform(_DAY, window, n), delay)
    delay = np.clip(np.rint(delay).astype(np.int64), 1, window)
    late = ~early & ~label & (rng.random(n) < 0.05)
    late_delay = rng.integers(window + 1, 365 * _DAY + 1, n)
    early_at = created + rng.integers(1, as_of_days * _DAY + 1, n)
    converted = np.full(n, -1, dtype=np.int64)
    converted = np.where(label, as_of + delay, converted)
    converted = np.where(late, as_of + late_delay, converted)
    converted = np.where(early, early_at, converted)

    # Sales-cycle activity after as_of for converters (before and shortly after the deal): this is what
    # leaks the label into any feature that is not point-in-time correct.
    buyer = label | early
    start = np.where(early, early_at, as_of)
    stop = np.where(early, early_at + 30 * _DAY, as_of + delay + 14 * _DAY)
    extra = np.where(buyer, rng.poisson(9.0, n), 0)
    x_lead = np.repeat(np.arange(n, dtype=np.int64), extra)
    span = (stop - start)[x_lead]
    x_when = start[x_lead] + 1 + np.floor(rng.random(len(x_lead)) * span).astype(np.int64)
    x_type = _POST_TYPES[rng.choice(len(_POST_TYPES), size=len(x_lead), p=_POST_SHARES)].astype(np.int8)
    keep = x_when <= data_end
    lead = np.concatenate([lead, x_lead[keep]])
    etype = np.concatenate([etype, x_type[keep]])
    when = np.concatenate([when, x_when[keep]])
    lead, when, etype = _sorted_events(lead, etype, when, int(created.min()))

    converted = np.where(converted > data_end, -1, converted)  # the CRM has not seen it yet

    width = max(7, len(str(n)))
    ids = _ids(prefix, np.arange(1, n + 1, dtype=np.int64), width)
    leads = pd.DataFrame(
        {
            "lead_id": pd.array(ids, dtype=_STR),
            "created_at": _times(created),
            "company": pd.array(_ids("Company ", firm["company"], 6), dtype=_STR),
            "industry": _text(firm["industry"], [r[0] for r in _INDUSTRIES]),
            "employees": firm["employees"],
            "annual_revenue": firm["annual_revenue"],
            "country": _text(firm["country"], [r[0] for r in _COUNTRIES]),
            "is_multinational": firm["is_multinational"],
            "job_title": _text(firm["title"], [t[0] for t in _TITLES]),
            "seniority": _text(firm["seniority"], _SENIORITIES),
            "lead_source": _text(firm["source"], [r[0] for r in _SOURCES]),
        }
    )
    events = pd.DataFrame(
        {
            "lead_id": pd.array(ids.take(pa.array(lead)), dtype=_STR),
            "timestamp": _times(when),
            "event_type": _text(etype, EVENT_TYPES),
        }
    )
    return _Sim(leads, events, converted, as_of, prob, early, intercept)


def _truth_frame(sim: _Sim, rows: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "lead_id": sim.leads["lead_id"].iloc[rows].reset_index(drop=True),
            "as_of": _times(sim.as_of[rows]),
            "true_probability": sim.prob[rows],
        }
    )


# ----------------------------------------------------------------------------------------------- pipeline
# The sales pipeline after conversion is drawn from a child generator AFTER everything above, so leads,
# events, outcomes and truth are unchanged for a seed. A lead that converts in `outcomes` becomes an
# opportunity at its converted_at: "lead -> opportunity" is exactly the existing conversion.

STAGES: tuple[str, ...] = ("MQL", "SRL", "SQL", "opportunity", "won", "lost")
TEAMS: tuple[str, ...] = ("team_a", "team_b", "team_c")
_TEAM_SHARES = np.array([0.40, 0.35, 0.25])
# Median hours from hand-over (SRL) to the first sales touch: team_c often breaches a 24 h SLA.
_TEAM_TOUCH_MEDIAN_HOURS = np.array([5.0, 12.0, 30.0])
_NEVER_TOUCHED = 0.04
# Relative odds of an opportunity closing won, by lead source (order of _SOURCES): webinars make opportunities
# that rarely close; referrals and the website close best; bought lists, trade shows and e-mail worst.
_WIN_WEIGHT = np.array([2.0, 1.7, 1.1, 1.0, 0.3, 0.45, 0.9, 0.6, 0.5])
OPPORTUNITY_WIN_RATE = 0.06
QUALIFIED_SHARE = 0.15
QUALIFIED_WIN_RATE = 0.30
WON_MEDIAN_DAYS = 18.0
_LOST_MEDIAN_DAYS = 30.0
_GAMMA2_MEDIAN = 1.678347  # median of a gamma(shape 2, scale 1)
# Leads that never convert: some are still handed over to sales (SRL) and most of those get accepted (SQL),
# tuned so that about 85% of all SRLs become SQLs (every converter passes SRL and SQL).
_OPEN_SRL_RATE = 0.25
_OPEN_SQL_RATE = 0.76
_CAMPAIGNS = ("2024_q3", "2024_q4", "2025_q1", "2025_q2", "spring%20launch", "brand+awareness", "retarget")
# (lead source code, landing URL; URLs ending in "=" get a campaign appended).
_LANDING = (
    (0, "https://example.com/?utm_source=partner_portal&utm_medium=referral&utm_campaign="),
    (0, "https://example.com/partners?utm_source=customer&utm_medium=referral"),
    (1, "https://example.com/pricing"),
    (1, "https://example.com/contact-sales"),
    (1, "https://www.example.com/"),
    (2, "https://example.com/blog/lead-scoring?utm_source=google&utm_medium=organic"),
    (2, "https://example.com/guides/crm?utm_source=bing&utm_medium=organic"),
    (3, "https://example.com/pricing?utm_source=google&utm_medium=cpc&utm_campaign="),
    (3, "https://example.com/demo?utm_source=bing&utm_medium=cpc&utm_campaign="),
    (4, "https://example.com/webinars/pipeline-101?utm_source=on24&utm_medium=webinar&utm_campaign="),
    (4, "https://example.com/webinars/ai-scoring?utm_source=zoom&utm_medium=webinar"),
    (5, "https://example.com/events?x_field_1=tbbanner"),
    (5, "https://example.com/events/booth?x_field_1=booth&utm_campaign="),
    (6, "https://example.com/?utm_source=linkedin&utm_medium=paid_social&utm_campaign="),
    (6, "https://example.com/blog?utm_source=facebook&utm_medium=social"),
    (6, "https://example.com/?utm_source=twitter&utm_medium=social"),
    (7, "https://example.com/newsletter?utm_source=newsletter&utm_medium=email&utm_campaign="),
    (7, "https://example.com/offer?utm_source=hubspot&utm_medium=email&utm_campaign="),
    (8, "https://example.com/offer?utm_source=list_vendor&utm_medium=email&utm_campaign="),
    (8, "https://example.com/trial?utm_source=datalist&utm_medium=cold_email"),
)


def _stage_rows(ids: pa.Array, stage: str, rows: np.ndarray, when: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame({
        "lead_id": pd.array(ids.take(pa.array(rows)), dtype=_STR),
        "stage": pd.Series(pd.array([stage] * len(rows), dtype=_STR)),
        "entered_at": _times(when),
    })


def _landing_urls(rng: np.random.Generator, source: np.ndarray) -> pd.Series:
    """A landing URL per lead consistent with its source, with the mess real exports have."""
    n = len(source)
    template_source = np.array([row[0] for row in _LANDING])
    pick = np.empty(n, dtype=np.int64)
    u = rng.random(n)
    for code in range(len(_SOURCES)):
        options = np.flatnonzero(template_source == code)
        rows = source == code
        pick[rows] = options[np.minimum((u[rows] * len(options)).astype(np.int64), len(options) - 1)]
    base = _text(pick, [row[1] for row in _LANDING])
    campaign = _text(rng.integers(0, len(_CAMPAIGNS), n), list(_CAMPAIGNS))
    url = base.where(~base.str.endswith("="), base + campaign)
    mess = rng.random(n)
    # ~3% without scheme, ~3% upper-case keys, ~3% missing: parsers must cope.
    url = url.where(~(mess < 0.03), url.str.replace("https://", "", regex=False))
    url = url.where(~((mess >= 0.03) & (mess < 0.06)), url.str.replace("utm_", "UTM_", regex=False))
    return url.mask((mess >= 0.06) & (mess < 0.09))


def _pipeline(rng: np.random.Generator, sim: _Sim, created: np.ndarray, data_end: int) -> dict[str, pd.DataFrame]:
    """Stage history (MQL -> SRL -> SQL -> opportunity -> won/lost) and per-lead pipeline facts.

    Win rates: OPPORTUNITY_WIN_RATE (6%) of all opportunities close won: the primary figure. The published
    ~30% win rate for new customers holds for *qualified* pipeline, so QUALIFIED_SHARE (15%) of opportunities
    are flagged `qualified` and they hold three quarters of the wins: their win rate is QUALIFIED_WIN_RATE
    (30%), the other 85% win about 1.8%. Both hold in expectation: 0.15 * 0.30 + 0.85 * 0.0176 = 0.06.
    Win odds differ by source (_WIN_WEIGHT); opportunities whose close falls after data_end stay open.
    """
    leads = sim.leads
    n = len(leads)
    ids = pa.array(leads["lead_id"].to_numpy(dtype=object), type=pa.string())
    source = pd.Categorical(leads["lead_source"], categories=[r[0] for r in _SOURCES]).codes.astype(np.int64)
    conv = sim.converted_at
    is_opp = conv >= 0
    span = np.maximum(conv - created, 1)

    # Hand-over and acceptance: converters pass both before their conversion; others only sometimes.
    srl = np.where(is_opp, created + np.floor(span * rng.uniform(0.15, 0.45, n)).astype(np.int64), -1)
    sql = np.where(is_opp, srl + np.floor((conv - srl) * rng.uniform(0.3, 0.8, n)).astype(np.int64), -1)
    open_srl = ~is_opp & (rng.random(n) < _OPEN_SRL_RATE)
    open_srl_at = created + np.rint(rng.gamma(2.0, 6.0, n) * _DAY).astype(np.int64) + 1
    srl = np.where(open_srl, open_srl_at, srl)
    open_sql = open_srl & (rng.random(n) < _OPEN_SQL_RATE)
    sql = np.where(open_sql, srl + np.rint(rng.gamma(2.0, 5.0, n) * _DAY).astype(np.int64) + 1, sql)
    srl = np.where(srl > data_end, -1, srl)
    sql = np.where((sql > data_end) | (srl < 0), -1, sql)

    # Close: win odds by source, scaled so that exactly OPPORTUNITY_WIN_RATE is expected over the opportunities.
    weight = _WIN_WEIGHT[source]
    scale = OPPORTUNITY_WIN_RATE * max(int(is_opp.sum()), 1) / max(float(weight[is_opp].sum()), 1e-9)
    won = is_opp & (rng.random(n) < np.clip(weight * scale, 0.0, 0.95))
    won_days = rng.gamma(2.0, WON_MEDIAN_DAYS / _GAMMA2_MEDIAN, n)
    lost_days = rng.gamma(2.0, _LOST_MEDIAN_DAYS / _GAMMA2_MEDIAN, n)
    closed_at = conv + np.rint(np.where(won, won_days, lost_days) * _DAY).astype(np.int64) + 1
    closed = is_opp & (closed_at <= data_end)
    q_won = QUALIFIED_SHARE * QUALIFIED_WIN_RATE / OPPORTUNITY_WIN_RATE
    q_lost = QUALIFIED_SHARE * (1 - QUALIFIED_WIN_RATE) / (1 - OPPORTUNITY_WIN_RATE)
    qualified = is_opp & (rng.random(n) < np.where(won, q_won, q_lost))

    stages = pd.concat([
        _stage_rows(ids, "MQL", np.arange(n), created),
        _stage_rows(ids, "SRL", np.flatnonzero(srl >= 0), srl[srl >= 0]),
        _stage_rows(ids, "SQL", np.flatnonzero(sql >= 0), sql[sql >= 0]),
        _stage_rows(ids, "opportunity", np.flatnonzero(is_opp), conv[is_opp]),
        _stage_rows(ids, "won", np.flatnonzero(closed & won), closed_at[closed & won]),
        _stage_rows(ids, "lost", np.flatnonzero(closed & ~won), closed_at[closed & ~won]),
    ], ignore_index=True)
    order = pd.Categorical(stages["stage"], categories=list(STAGES)).codes
    stages = stages.iloc[np.lexsort((order, stages["lead_id"].to_numpy(dtype=object)))].reset_index(drop=True)

    team = rng.choice(len(TEAMS), size=n, p=_TEAM_SHARES)
    touch_hours = rng.lognormal(np.log(_TEAM_TOUCH_MEDIAN_HOURS[team]), 1.0)
    touch = srl + np.rint(touch_hours * 3600).astype(np.int64)
    touch = np.where((srl < 0) | (touch > data_end) | (rng.random(n) < _NEVER_TOUCHED), -1, touch)
    # Deal value grows with company size (about +30% per doubling of employees), lognormal around it.
    employees = leads["employees"].to_numpy(dtype=np.float64)
    value = np.round(rng.lognormal(np.log(6_000.0) + 0.4 * np.log(employees / 50.0), 0.7), -2)
    pipeline = pd.DataFrame({
        "lead_id": leads["lead_id"],
        "team": _text(team, list(TEAMS)),
        "landing_url": _landing_urls(rng, source),
        "handed_over_at": _times(srl),
        "first_touch_at": _times(touch),
        "deal_value": np.where(is_opp, np.maximum(value, 500.0), np.nan),
        "qualified": pd.array(np.where(is_opp, qualified, False), dtype="boolean"),
    })
    pipeline["qualified"] = pipeline["qualified"].mask(~is_opp)
    return {"stages": stages, "pipeline": pipeline}


def generate_demo_world(
    n_leads: int = 20_000,
    seed: int = 0,
    *,
    n_fresh: int = 2_000,
    start: str = "2024-07-01",
    months: int = 15,
    as_of_days: int = 14,
    label_window_days: int = 90,
) -> DemoWorld:
    """Generate a seeded CRM world: training history, a fresh list to score, and the ground truth."""
    if n_leads < 1 or n_fresh < 0 or months < 1 or as_of_days < 1 or label_window_days < 1:
        raise ValueError("n_leads, months, as_of_days and label_window_days must be >= 1; n_fresh >= 0")
    begin = pd.Timestamp(start, tz="UTC")
    end = begin + pd.DateOffset(months=months)
    t0, t1 = int(begin.timestamp()), int(end.timestamp())

    rng = np.random.default_rng(seed)
    created = np.sort(rng.integers(t0, t1 - as_of_days * _DAY, n_leads))
    sim = _simulate(rng, created, t1, "L", as_of_days, label_window_days, None)
    outcomes = pd.DataFrame({"lead_id": sim.leads["lead_id"], "converted_at": _times(sim.converted_at)})

    # The fresh list: same process (same intercept), as_of in the last 30 days, open leads only.
    fresh_rng = np.random.default_rng([seed, 1])
    draw = int(n_fresh * 1.15) + 50
    while True:
        fresh_as_of = np.sort(fresh_rng.integers(t1 - 30 * _DAY, t1, draw))
        fresh = _simulate(fresh_rng, fresh_as_of - as_of_days * _DAY, t1, "N", as_of_days, label_window_days,
                          sim.intercept)
        if int((~fresh.early).sum()) >= n_fresh:
            break
        draw *= 2  # practically never: early converters are a few percent
    rows = np.flatnonzero(~fresh.early)[:n_fresh]
    fresh_leads = fresh.leads.iloc[rows].reset_index(drop=True)
    fresh_leads["as_of"] = _times(fresh.as_of[rows])
    kept = fresh.events["lead_id"].isin(fresh_leads["lead_id"])
    fresh_events = fresh.events[kept.to_numpy()].reset_index(drop=True)

    return DemoWorld(
        leads=sim.leads,
        events=sim.events,
        outcomes=outcomes,
        truth=_truth_frame(sim, np.arange(n_leads)),
        fresh_leads=fresh_leads,
        fresh_events=fresh_events,
        fresh_truth=_truth_frame(fresh, rows),
        data_end=end,
        as_of_days=as_of_days,
        label_window_days=label_window_days,
        # Drawn last from its own child generator so every frame above stays identical for a seed.
        **_pipeline(np.random.default_rng([seed, 7]), sim, created, t1),
    )


def write_demo_world(world: DemoWorld, directory: Path, fmt: str = "csv") -> dict[str, Path]:
    """Write leads/events/outcomes/fresh_leads/fresh_events (and stages/pipeline) as files ('csv' or 'parquet').

    The truth goes to a separate `truth/` subfolder (truth.csv, fresh_truth.csv) so it is clearly kept
    aside. Returns name->path.
    """
    if fmt not in ("csv", "parquet"):
        raise ValueError(f"fmt must be 'csv' or 'parquet', got {fmt!r}")
    directory = Path(directory)
    tables = {
        "leads": world.leads,
        "events": world.events,
        "outcomes": world.outcomes,
        "fresh_leads": world.fresh_leads,
        "fresh_events": world.fresh_events,
    }
    if world.stages is not None:
        tables["stages"] = world.stages
    if world.pipeline is not None:
        tables["pipeline"] = world.pipeline
    written = {name: write_table(frame, directory / f"{name}.{fmt}") for name, frame in tables.items()}
    written["truth"] = write_table(world.truth, directory / "truth" / "truth.csv")
    written["fresh_truth"] = write_table(world.fresh_truth, directory / "truth" / "fresh_truth.csv")
    return written
