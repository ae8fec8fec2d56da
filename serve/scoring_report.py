"""What one scoring run did, for a person and for MLflow: counts, input warnings, expected conversions, and how the
batch drifted from training (a self-contained HTML page, and a run in the tracking store)."""

from __future__ import annotations

import html
from collections.abc import Mapping

from leadscore.models.drift import PSI_CHANGED, PSI_SHIFTED

SCORING_EXPERIMENT = "lead-scoring"


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
    style = ("body{font-family:sans-serif;margin:2em auto;max-width:1000px;padding:0 1em;color:#222}"
             ".wrap{overflow-x:auto}table{border-collapse:collapse;margin:0.5em 0 1.5em}"
             "td,th{border:1px solid #ccc;padding:3px 8px;text-align:left;font-size:13px}th{background:#f3f3f3}"
             "td.num{text-align:right}.shifted{color:#a00;font-weight:bold}.changed{color:#a60}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>"]
    parts += [f"<p>{html.escape(line)}</p>" for line in summary_sentences(result, model)]
    if result.warnings:
        parts.append("<h2>Input warnings</h2><ul>")
        parts += [f"<li>{html.escape(w)}</li>" for w in result.warnings]
        parts.append("</ul>")
    drift = result.drift or {}
    if drift.get("n"):
        parts.append("<h2>Drift against training</h2><p>Population stability index (PSI) of each input and of the "
                     "score against the model's test slice: below 0.1 stable, 0.1-0.25 changed, above 0.25 "
                     "shifted; a PSI within four times its own sampling noise is not read as drift.</p>")
        parts.append("<div class='wrap'><table><thead><tr><th>Input</th><th>PSI</th><th>Reading</th></tr></thead>"
                     "<tbody>")
        for row in drift_rows(drift):
            css = row["verdict"] if row["verdict"] in ("shifted", "changed") else ""
            parts.append(f"<tr><td>{html.escape(row['input'])}</td><td class='num'>{row['psi']:.3f}</td>"
                         f"<td class='{css}'>{html.escape(row['verdict'])}</td></tr>")
        parts.append("</tbody></table></div>")
    parts.append("</body></html>")
    return "\n".join(parts)


def scoring_metrics(result) -> dict[str, float]:
    """The run's numbers as MLflow metrics (PSI per feature as `psi.<feature>`)."""
    drift = result.drift or {}
    metrics: dict[str, float] = {"input_rows": result.input_rows, "scored_rows": result.scored_rows,
                                 "rejected_rows": result.rejected_rows, "warnings": len(result.warnings)}
    for key in ("expected_conversions", "expected_conversion_rate", "expected_roc_auc", "score_psi"):
        if drift.get(key) is not None:
            metrics[key] = float(drift[key])
    for name, value in (drift.get("feature_psi") or {}).items():
        metrics[f"psi.{name}"] = float(value)
    return metrics


def record_scoring_run(result, *, model_uri: str, tracking_uri: str, inputs: Mapping[str, str | None],
                       engine: str = "duckdb") -> str:
    """Log a scoring run to the tracking store beside the model: inputs and model version as parameters, counts,
    expected conversions and PSI per feature as metrics, the drift JSON and the HTML page as artifacts, and tags
    that link it to the model version it used. Returns the run id."""
    import json

    from leadscore.models.registry import log_scoring_run, model_reference

    ref = model_reference(model_uri, tracking_uri=tracking_uri)
    params = {"model_uri": model_uri, "model_version": ref.get("version"), "engine": engine,
              **{f"input.{k}": v for k, v in inputs.items()}, "output": str(result.output)}
    tags = {"leadscore.model_name": str(ref.get("name") or ""), "leadscore.model_version": str(ref.get("version")
                                                                                                or ""),
            "leadscore.drift": "; ".join((result.drift or {}).get("text") or []) or "none"}
    texts = {"scoring/summary.json": json.dumps(result.to_dict(), indent=2, default=str),
             "scoring/report.html": scoring_report_html(result, title=f"Scoring run: {result.output.name}",
                                                        model=ref)}
    return log_scoring_run(tracking_uri=tracking_uri, experiment=SCORING_EXPERIMENT, params=params,
                           metrics=scoring_metrics(result), texts=texts, tags=tags,
                           run_name=f"score {result.output.name}")
