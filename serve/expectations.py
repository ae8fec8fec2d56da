"""Does a scoring input look like training's? Plain-language warnings from a batch's counters.

Scoring never stops for these (every lead still gets a score); `leadscore score` prints them, puts them in its
JSON, and `--strict` turns them into an error before anything is written.
"""

from __future__ import annotations

from collections.abc import Sequence

from leadscore.features.spec import OTHER, FeatureSpec

# A share counts as "far below training's" when it is under half of it and the binomial chance of seeing so few
# matches at training's rate is below this (small batches are not flagged for noise).
_SURPRISE = 1e-3


def _far_below(count: int, n: int, share: float) -> bool:
    if n == 0 or share <= 0:
        return False
    if count / n >= share / 2:
        return False
    from scipy.stats import binom

    return bool(binom.cdf(count, n, share) < _SURPRISE)


def _columns(stats: dict, prefix: str) -> dict[str, int]:
    return {k.split(":", 1)[1]: int(v) for k, v in stats.items() if k.startswith(prefix) and v}


def _names(cols: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(c) for c in cols[:limit])
    return shown + (f" and {len(cols) - limit} more" if len(cols) > limit else "")


def input_warnings(
    spec: FeatureSpec,
    stats: dict,
    *,
    scored_rows: int,
    events_given: bool,
    events_rows: int = 0,
    keep_missing: Sequence[str] = (),
) -> list[str]:
    """One sentence per way the scored input differs from what the model was trained on."""
    out: list[str] = []
    n = scored_rows
    if spec.has_events and n:
        if not events_given:
            out.append("no events file: every lead is scored as if it had no activity (the model was trained "
                       "with events; give --events)")
        else:
            matched = int(stats.get("leads_matched_by_events", 0))
            active = int(stats.get("leads_with_events", 0))
            trained = spec.profile.get("leads_matched_by_events_share")
            id_hint = (f"check that the events' {spec.event_lead_id!r} values are written like the leads' "
                       f"{spec.id_column!r} (case, padding, prefixes)")
            if matched == 0 and events_rows:
                out.append(f"none of the {events_rows:,} event rows matches a lead id: every lead is scored as "
                           f"if it had no activity; {id_hint}")
            elif trained is not None and _far_below(matched, n, trained):
                out.append(f"only {matched:,} of {n:,} leads ({matched / n:.1%}) have event rows, against "
                           f"{trained:.1%} in training; {id_hint}")
            elif (share := spec.profile.get("leads_with_events_share")) is not None and _far_below(active, n, share):
                out.append(f"only {active:,} of {n:,} leads ({active / n:.1%}) have activity before as_of, "
                           f"against {share:.1%} in training (events from another period, or as_of too early?)")
    missing = sorted(_columns(stats, "missing_column:"))
    if missing:
        out.append(f"column{'s' if len(missing) > 1 else ''} {_names(missing)} not in the file: scored as "
                   f"missing for every lead")
    for col, count in sorted(_columns(stats, "unseen_category:").items()):
        fill = f"{OTHER!r}" if OTHER in spec.categorical_vocab.get(col, ()) else "missing"
        out.append(f"column {col!r}: {count:,} lead(s) with a value not seen in training (scored as {fill})")
    for col, count in sorted(_columns(stats, "not_a_number:").items()):
        out.append(f"column {col!r}: {count:,} value(s) are not numbers (scored as missing)")
    for col, count in sorted(_columns(stats, "implausible:").items()):
        seen = spec.numeric_ranges.get(col)
        where = f" far outside training's {seen[0]:.6g} to {seen[1]:.6g}" if seen else ""
        out.append(f"column {col!r}: {count:,} value(s) infinite, too large or{where} (scored as missing)")
    for col in keep_missing:
        out.append(f"--keep {col!r}: no such column in the leads file (not copied)")
    if stats.get("as_of_in_future"):
        out.append(f"{int(stats['as_of_in_future']):,} lead(s) scored as of a time more than a day in the future")
    if stats.get("malformed_event_rows"):
        out.append(f"{int(stats['malformed_event_rows']):,} event row(s) with a wrong number of fields ignored")
    dupes = int(stats.get("duplicate_events", 0))
    if dupes:
        if stats.get("duplicate_events_dropped"):
            out.append(f"{dupes:,} duplicate event row(s) (same lead, time and type) dropped (--dedupe-events)")
        else:
            out.append(f"{dupes:,} duplicate event row(s) (same lead, time and type) counted as separate events; "
                       f"--dedupe-events drops them")
    return out
