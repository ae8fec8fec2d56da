"""The training run's report: PNG figures, model_card.md, CSV tables and one self-contained report.html."""

from __future__ import annotations

import base64
import logging
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leadscore.features.io import write_table, write_text
from leadscore.models.metrics import interval
from leadscore.presentation import format as fmt
from leadscore.presentation import html, training_plots
from leadscore.presentation.figures import png, write_png
from leadscore.presentation.model_card import model_card
from leadscore.training.report import BASELINE_NAME, MODEL_NAME, ReportData, report_data

if TYPE_CHECKING:
    from leadscore.training.train import TrainResult

log = logging.getLogger(__name__)

METRIC_ROWS = ("roc_auc", "pr_auc", "lift_top_decile", "brier", "log_loss", "ece", "ece_noise_p95",
               "calibration_in_the_large", "mae_vs_truth")
_RUNS = {"model": None, "model_uncalibrated": "before calibration", "baseline": BASELINE_NAME}
_CAPTIONS = {
    "plots_reliability": "Reliability: observed conversion rate against predicted probability (test slice); on "
                         "the diagonal, a probability of 0.30 means 30 in 100 such leads convert.",
    "plots_gains_lift": "Cumulative gains and lift by decile (test slice): how many conversions sales finds by "
                        "working the top of the list.",
    "plots_roc_pr": "ROC and precision-recall curves, model vs baseline (test slice).",
    "plots_bands": "Expected vs observed conversions per band (test slice).",
    "plots_shap_summary": "What drives the score: each dot is a test lead, its position the feature's "
                          "contribution to the margin (SHAP for LightGBM; coefficient x centred value for the "
                          "logistic part).",
    "plots_dependence": "Feature value vs contribution for the four most important features.",
    "plots_learning_curve": "Learning curve: test metrics by amount of (most recent) training data.",
    "plots_backtest": "Rolling-origin backtest by month.",
}


def headline(result: TrainResult, data: ReportData) -> list[str]:
    """The 2-4 sentences a revenue leader can repeat: top-decile conversion, honesty of the probabilities, bands."""
    m = result.metrics.get("model", {})
    base = result.metrics.get("baseline", {})
    y = data.y
    rate = float(np.mean(y)) if len(y) else float("nan")
    out = []
    lift = m.get("lift_top_decile")
    if lift is not None:
        out.append(f"On {fmt.count(len(y))} recent leads the model never saw, the 10% it scores highest convert "
                   f"at {fmt.percent(lift * rate)}: {lift:.1f} times the average of {fmt.percent(rate)}.")
    auc, low, high = interval(data.intervals, MODEL_NAME, "roc_auc")
    gain, g_low, g_high = interval(data.intervals, f"{MODEL_NAME} - {BASELINE_NAME}", "roc_auc")
    if np.isfinite(auc):
        better = ("ranks better than" if g_low > 0 else "ranks about as well as" if g_high >= 0 else
                  "ranks worse than")
        out.append(f"It ranks leads with ROC AUC {fmt.probability(auc)} (95% interval {fmt.probability(low)} to "
                   f"{fmt.probability(high)}) and {better} a simple logistic baseline "
                   f"({fmt.probability(base.get('roc_auc'))}).")
    if "ece" in m and "ece_noise_p95" in m:
        within = m["ece"] <= m["ece_noise_p95"]
        out.append(f"Its probabilities are {'honest' if within else 'off by more than chance'}: predicted and "
                   f"observed conversion rates differ by {fmt.points(m['ece'])} on average, "
                   f"{'within' if within else 'above'} the {fmt.points(m['ece_noise_p95'])} that chance alone "
                   f"gives on this many leads.")
    bands = data.bands
    if len(bands) and bands["observed"].sum() > 0:
        top = bands.iloc[-1]
        out.append(f"The {top['band']} band holds {fmt.percent(top['share'])} of leads and "
                   f"{fmt.percent(top['observed'] / bands['observed'].sum())} of the conversions.")
    return out


def _metric_cells(data: ReportData, names: dict[str, str]) -> Callable[[str, str, Any], str]:
    by_display = {names["model"]: MODEL_NAME, names["baseline"]: BASELINE_NAME}

    def cell(scorer: str, key: str, value: Any) -> str:
        source = by_display.get(scorer)
        if source is not None:
            point, low, high = interval(data.intervals, source, key)
            if np.isfinite(low):
                return fmt.with_interval(key, value, low, high)
        return fmt.metric(key, value)

    return cell


def _drop_section(card: str, title: str) -> str:
    """The card without one of its `##` sections (the page shows that content in its own, richer form)."""
    return re.sub(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", "", card, flags=re.MULTILINE | re.DOTALL)


def render_html(result: TrainResult, data: ReportData, images: dict[str, str], card: str,
                title: str) -> str:
    """The self-contained report page: summary, test metrics with intervals and meanings, figures, the card."""
    names = {"model": f"{result.bundle.learner} (calibrated)", "baseline": BASELINE_NAME}
    metrics = {}
    for key, display in _RUNS.items():
        if key in result.metrics:
            metrics[names["model"] if key == "model" else display] = result.metrics[key]
    sections = [
        html.Section("Test metrics", [html.metrics_table(metrics, METRIC_ROWS, cells=_metric_cells(data, names))],
                     intro=f"On the held-out test slice ({fmt.count(len(data.y))} leads, "
                           f"{fmt.count(int(np.sum(data.y)))} conversions). In brackets: 95% bootstrap interval "
                           f"({data.n_boot} paired resamples)."),
        html.Section("Plots", [html.figure(png, key.removeprefix("plots_"), _CAPTIONS.get(key, ""))
                               for key, png in images.items()]),
        html.Section("", [html.markup("<div class='card'>"), html.markdown(_drop_section(card, "Test metrics")),
                          html.markup("</div>")]),
    ]
    return html.page(title, sections, summary=headline(result, data))


def write_report(result: TrainResult, directory: str | os.PathLike, *, version: str | None = None,
                 segment_columns: Sequence[str] | None = None, backtest: bool = True,
                 learning_curve: bool = True, step: Callable[[str], None] | None = None) -> dict[str, Path]:
    """Write every plot, model_card.md, segments.csv, backtest.csv and a self-contained report.html.

    Returns name -> path for every file written (keys starting with "plots_" are images).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = report_data(result, segment_columns=segment_columns, backtest=backtest, learning_curve=learning_curve,
                       step=step)
    started = time.perf_counter()
    (step or (lambda message: None))("report: figures, model card and page")
    spec = result.bundle.spec
    figures = {
        "plots_reliability": ("reliability.png", training_plots.reliability_figure(data.y, data.curves)),
        "plots_gains_lift": ("gains_lift.png", training_plots.gains_figure(data.y, data.curves)),
        "plots_roc_pr": ("roc_pr.png", training_plots.roc_pr_figure(data.y, data.curves)),
        "plots_bands": ("bands.png", training_plots.bands_figure(data.bands)),
        "plots_shap_summary": ("shap_summary.png", training_plots.contributions_figure(
            data.contributions, data.explained, categorical=set(spec.categorical_columns))),
        "plots_dependence": ("dependence.png", training_plots.dependence_figure(
            data.contributions, data.explained, categories=dict(spec.categorical_vocab), top_k=4)),
    }
    files: dict[str, Path] = {}
    if data.learning is not None:
        files["report_learning_curve"] = write_table(data.learning, directory / "learning_curve.csv")
        figures["plots_learning_curve"] = ("learning_curve.png", training_plots.learning_curve_figure(data.learning))
    if data.backtest is not None:
        files["report_backtest"] = write_table(data.backtest, directory / "backtest.csv")
        if not data.backtest.empty:
            figures["plots_backtest"] = ("backtest.png", training_plots.backtest_figure(data.backtest))
    files["report_segments"] = write_table(data.segments, directory / "segments.csv")
    images: dict[str, Path] = {}
    embedded: dict[str, str] = {}
    for key, (name, fig) in figures.items():
        data_png = png(fig)
        images[key] = write_png(data_png, directory / name)
        embedded[key] = base64.b64encode(data_png).decode("ascii")
    card = model_card(result, version=version, segments=data.segments, backtest=data.backtest,
                      learning=data.learning, intervals=data.intervals, n_boot=data.n_boot, seed=data.seed)
    files["report_model_card"] = write_text(card, directory / "model_card.md")
    title = f"Lead conversion model report{f' {version}' if version else ''}"
    files["report_html"] = write_text(render_html(result, data, embedded, card, title), directory / "report.html")
    timings = {**data.timings, "figures_and_page": time.perf_counter() - started}
    log.info("report written to %s (%s)", directory, ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
    return {**images, **files}
