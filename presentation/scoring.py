"""The page of one scoring run: what a person reads about a batch (counts, input warnings, expected conversions,
drift against training), on the one page shell."""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

from leadscore.models.drift import PSI_CHANGED, PSI_SHIFTED
from leadscore.presentation.html import Section, bullets, page, table


def _verdict(psi: float) -> str:
    if psi >= PSI_SHIFTED:
        return "shifted"
    if psi >= PSI_CHANGED:
        return "changed"
    return "stable"


def summary_sentences(result, model: Mapping | None = None) -> list[str]:
    """Two to four sentences a revenue leader can repeat about this batch."""
    lines = [f"Scored {result.scored_rows:,} of {result.input_rows:,} leads"
             + (f" ({result.rejected_rows:,} rejected, each with its reason)." if result.rejected_rows else ".")]
    drift = result.drift or {}
    if drift.get("n"):
        auc = drift.get("expected_roc_auc")
        lines.append(f"The model expects {drift['expected_conversions']:,.1f} of them to convert "
                     f"({drift['expected_conversion_rate']:.1%})"
                     + (f", and a ROC AUC of about {auc:.3f} on this batch" if auc else "") + ".")
        shifted, changed = drift.get("shifted") or [], drift.get("changed") or []
        if shifted:
            lines.append(f"Inputs unlike training: {', '.join(shifted[:4])} shifted (PSI above {PSI_SHIFTED}); "
                         f"treat the scores with care until `leadscore monitor` confirms them.")
        elif changed:
            lines.append(f"Some inputs moved a little ({', '.join(changed[:4])}); nothing shifted.")
        else:
            lines.append("Every input and the score look like training (no PSI beyond its noise and 0.1).")
    if model and model.get("version"):
        lines.append(f"Model: {model.get('name')} version {model.get('version')}"
                     + (f" (@{model['alias']})" if model.get("alias") else "") + ".")
    return lines


def drift_rows(drift: Mapping) -> list[dict]:
    """Per feature (and the score): PSI and what it means, largest first."""
    rows = [{"input": name, "psi": value, "verdict": _verdict(value) if name in
             set(drift.get("shifted") or []) | set(drift.get("changed") or []) else "stable (within noise)"
             if value >= PSI_CHANGED else "stable"} for name, value in (drift.get("feature_psi") or {}).items()]
    rows.sort(key=lambda r: -r["psi"])
    if drift.get("score_psi") is not None:
        rows.insert(0, {"input": "(the score)", "psi": drift["score_psi"], "verdict": _verdict(drift["score_psi"])})
    return rows


def scoring_report_html(result, *, title: str = "Scoring run", model: Mapping | None = None) -> str:
    """A self-contained page: the summary, input warnings, expected conversions and the drift table."""
    sections = []
    if result.warnings:
        sections.append(Section("Input warnings", [bullets(list(result.warnings))]))
    drift = result.drift or {}
    if drift.get("n"):
        rows = pd.DataFrame(drift_rows(drift), columns=["input", "psi", "verdict"])
        sections.append(Section(
            "Drift against training",
            [table(rows, formats={"psi": lambda v: f"{v:.3f}"},
                   headers={"input": "input", "psi": "PSI", "verdict": "reading"}, row_class="verdict",
                   text_columns=("input", "verdict"))],
            intro="Population stability index (PSI) of each input and of the score against the model's test slice: "
                  "below 0.1 stable, 0.1-0.25 changed, above 0.25 shifted; a PSI within four times its own sampling "
                  "noise is not read as drift."))
    return page(title, sections, summary=summary_sentences(result, model))
