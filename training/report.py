"""Evaluation report of a training run: plots, model card, segment and backtest tables, one self-contained HTML."""

from __future__ import annotations

import base64
import html
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from leadscore.features.io import write_table, write_text
from leadscore.models.explain import margin_contributions
from leadscore.training import plots
from leadscore.training.backtest import learning_curve as compute_learning_curve
from leadscore.training.backtest import rolling_backtest, segment_metrics
from leadscore.training.model_card import band_table, baseline_probabilities, format_metric, model_card

if TYPE_CHECKING:
    from leadscore.training.train import TrainResult

log = logging.getLogger(__name__)

DEFAULT_SEGMENT_COLUMNS = ("lead_source", "industry", "country", "channel", "origin")
SHAP_MAX_ROWS = 2000
METRIC_COLUMNS = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "ece_noise_p95", "calibration_in_the_large",
                  "lift_top_decile", "mae_vs_truth")
MODEL_NAMES = {"model": "chosen learner (calibrated)", "model_uncalibrated": "chosen learner (before calibration)",
               "baseline": "logistic baseline"}
_CAPTIONS = {
    "plots_reliability": "Reliability: observed conversion rate against predicted probability (test slice).",
    "plots_gains_lift": "Cumulative gains and lift by decile (test slice).",
    "plots_roc_pr": "ROC and precision-recall curves, model vs baseline (test slice).",
    "plots_bands": "Expected vs observed conversions per band (test slice).",
    "plots_shap_summary": "What drives the model: exact contributions to its margin (SHAP for LightGBM; coefficient x "
                          "centred value for the logistic part), on sampled test leads.",
    "plots_dependence": "Feature value vs contribution for the four most important features.",
    "plots_learning_curve": "Learning curve: test metrics by amount of (most recent) training data.",
    "plots_backtest": "Rolling-origin backtest by month.",
}


def default_segment_columns(result: TrainResult, extra: Sequence[str] | None = None) -> list[str]:
    """The default segment columns present among the model's categorical columns, then any given ones."""
    cats = set(result.bundle.spec.categorical_columns)
    return list(dict.fromkeys([c for c in DEFAULT_SEGMENT_COLUMNS if c in cats] + list(extra or ())))


def metrics_table(metrics: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Test metrics, one row per model, the columns present in every model's metrics, formatted as text."""
    rows = []
    for key, name in MODEL_NAMES.items():
        values = metrics.get(key)
        if values is None:
            continue
        rows.append({"model": name, **{m: format_metric(m, values.get(m)) for m in METRIC_COLUMNS}})
    table = pd.DataFrame(rows)
    present = [m for m in METRIC_COLUMNS if any(m in metrics.get(k, {}) for k in MODEL_NAMES)]
    return table[["model", *present]] if rows else table


def _inline(text: str) -> str:
    text = html.escape(text, quote=False)
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", text)
    return re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", text)


def _split_row(line: str) -> list[str]:
    cells = re.split(r"(?<!\\)\|", line.strip().strip("|"))
    return [c.strip().replace("\\|", "|") for c in cells]


def markdown_to_html(text: str) -> str:
    """The small Markdown subset the model card uses (headings, lists, tables, paragraphs) as HTML."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif line.startswith("#"):
            level = min(len(line) - len(line.lstrip("#")), 6)
            # The card's headings sit one level below the report's own title.
            tag = f"h{min(level + 1, 6)}"
            out.append(f"<{tag}>{_inline(line.lstrip('#').strip())}</{tag}>")
            i += 1
        elif line.startswith("|"):
            block = []
            while i < len(lines) and lines[i].startswith("|"):
                block.append(lines[i])
                i += 1
            head = "".join(f"<th>{_inline(c)}</th>" for c in _split_row(block[0]))
            body = "".join("<tr>" + "".join(f"<td>{_inline(c)}</td>" for c in _split_row(r)) + "</tr>"
                           for r in block[2:])
            out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        elif line.startswith("- "):
            items = []
            while i < len(lines) and lines[i].startswith("- "):
                items.append(f"<li>{_inline(lines[i][2:])}</li>")
                i += 1
            out.append(f"<ul>{''.join(items)}</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].startswith(("#", "|", "- ")):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_inline(' '.join(para))}</p>")
    return "\n".join(out)


def html_table(frame: pd.DataFrame, formats: dict[str, str] | None = None) -> str:
    """An HTML table of a DataFrame; numbers formatted with format_metric (by column name or `formats`)."""
    formats = formats or {}
    if frame.empty:
        return "<p>None.</p>"
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in frame.columns)
    rows = []
    for row in frame.itertuples(index=False):
        cells = []
        for col, value in zip(frame.columns, row, strict=True):
            if isinstance(value, pd.Timestamp):
                text = value.strftime("%Y-%m-%d")
            elif isinstance(value, float | np.floating | int | np.integer) and not isinstance(value, bool):
                text = format_metric(formats.get(col, col), value)
            else:
                text = str(value)
            cells.append(f"<td>{html.escape(text)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f"<figure><img src=\"data:image/png;base64,{data}\" alt=\"{html.escape(path.stem)}\">"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def render_html(title: str, metrics: pd.DataFrame, images: dict[str, Path], segments: pd.DataFrame | None,
                backtest: pd.DataFrame | None, card: str) -> str:
    """The self-contained report page: inline CSS, images as base64 data, no scripts or external links."""
    style = ("body{font-family:sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}"
             "table{border-collapse:collapse;margin:0.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:left;font-size:13px}th{background:#f3f3f3}figure{margin:1em 0 2em}img{max-width:100%}"
             "figcaption{font-size:13px;color:#555}code{background:#f3f3f3;padding:0 3px}"
             ".card{border-top:2px solid #ccc;margin-top:2em}")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{style}</style></head><body><h1>{html.escape(title)}</h1>",
             "<h2>Test metrics</h2>", html_table(metrics), "<h2>Plots</h2>"]
    parts += [_image(path, _CAPTIONS.get(key, path.stem)) for key, path in images.items()]
    if segments is not None:
        parts += ["<h2>Segments (test slice)</h2>",
                  html_table(segments, {"rate": "roc_auc", "mean_probability": "roc_auc"})]
    if backtest is not None:
        parts += ["<h2>Backtest</h2>", html_table(backtest.drop(columns=["test_end"], errors="ignore"),
                                                  {"positive_rate": "roc_auc", "mean_probability": "roc_auc"})]
    parts += ["<div class='card'>", markdown_to_html(card), "</div></body></html>"]
    return "\n".join(parts)


def write_report(result: TrainResult, directory: str | os.PathLike, *, version: str | None = None,
                 segment_columns: Sequence[str] | None = None, backtest: bool = True,
                 learning_curve: bool = True, step: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write every plot, model_card.md, segments.csv, backtest.csv and a self-contained report.html.

    Returns name -> path for every file written (keys starting with "plots_" are images).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    started = time.perf_counter()

    announce = step or (lambda message: None)

    def lap(stage: str) -> None:
        nonlocal started
        now = time.perf_counter()
        timings[stage] = now - started
        started = now
        following = {"curves": "report: SHAP summary and dependence plots", "shap": "report: learning curve",
                     "learning_curve": "report: rolling backtest (monthly folds)"}.get(stage)
        if following:
            announce(following)

    announce("report: reliability, gains, ROC/PR and band plots")

    files: dict[str, Path] = {}
    images: dict[str, Path] = {}
    spec, bundle = result.bundle.spec, result.bundle
    test = result.test_frame
    y = test.y
    p_model = result.test_scores["probability"].to_numpy(dtype="float64")
    p_base = baseline_probabilities(result)
    curves = {f"{bundle.learner} (calibrated)": p_model, "logistic baseline": p_base}
    images["plots_reliability"] = plots.reliability_diagram(y, curves, directory / "reliability.png")
    images["plots_gains_lift"] = plots.gains_chart(y, curves, directory / "gains_lift.png")
    images["plots_roc_pr"] = plots.roc_pr_curves(y, curves, directory / "roc_pr.png")
    images["plots_bands"] = plots.band_expected_observed(band_table(p_model, y, bundle.bands),
                                                         directory / "bands.png")
    lap("curves")

    # SHAP on a fixed sample: exact TreeSHAP costs grow with rows, and 2,000 leads show the shape well.
    X = test.X
    if len(X) > SHAP_MAX_ROWS:
        rows = np.sort(np.random.default_rng(result.config.seed).choice(len(X), SHAP_MAX_ROWS, replace=False))
        X = X.iloc[rows]
    contrib = margin_contributions(bundle.model, X)
    images["plots_shap_summary"] = plots.shap_summary(contrib, X, directory / "shap_summary.png")
    images["plots_dependence"] = plots.dependence_plots(contrib, X, directory / "dependence.png",
                                                        categories=dict(spec.categorical_vocab), top_k=4)
    lap("shap")

    learning = None
    if learning_curve:
        learning = compute_learning_curve(result)
        files["report_learning_curve"] = write_table(learning, directory / "learning_curve.csv")
        images["plots_learning_curve"] = plots.learning_curve_chart(learning, directory / "learning_curve.png")
        lap("learning_curve")

    folds = None
    if backtest and test.as_of.notna().all() and result.frame.as_of.notna().all():
        folds = rolling_backtest(result.frame, result.config)
        files["report_backtest"] = write_table(folds, directory / "backtest.csv")
        if not folds.empty:
            images["plots_backtest"] = plots.backtest_chart(folds, directory / "backtest.png")
        lap("backtest")

    segments = segment_metrics(result.test_scores, test, default_segment_columns(result, segment_columns))
    files["report_segments"] = write_table(segments, directory / "segments.csv")
    lap("segments")

    card = model_card(result, version=version, segments=segments, backtest=folds, seed=result.config.seed,
                      learning=learning)
    files["report_model_card"] = write_text(card, directory / "model_card.md")
    lap("model_card")

    title = f"Lead conversion model report{f' {version}' if version else ''}"
    page = render_html(title, metrics_table(result.metrics), images, segments, folds, card)
    files["report_html"] = write_text(page, directory / "report.html")
    lap("html")
    log.info("report written to %s (%s)", directory, ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return {**images, **files}

