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

from leadscore.features.io import write_bytes, write_table, write_text
from leadscore.models.metrics import interval
from leadscore.presentation import format as fmt
from leadscore.presentation import html, training_plots
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
    return start_report(result, directory, version=version, segment_columns=segment_columns, backtest=backtest,
                        learning_curve=learning_curve, step=step, draw_apart=False).finish()


def start_report(result: TrainResult, directory: str | os.PathLike, *, version: str | None = None,
                 segment_columns: Sequence[str] | None = None, backtest: bool = True,
                 learning_curve: bool = True, step: Callable[[str], None] | None = None,
                 draw_apart: bool = True) -> PendingReport:
    """`write_report` in two halves: everything but the figures and the page now, and, with `draw_apart`, the
    figures drawn by another Python process meanwhile; `PendingReport.finish` waits for them and writes the page.

    Drawing the figures is 2-4 s of single-threaded matplotlib at the demo's size, and what a training run does
    next (logging to MLflow) is single-threaded too: on two processes they run at the same time.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = report_data(result, segment_columns=segment_columns, backtest=backtest, learning_curve=learning_curve,
                       step=step)
    started = time.perf_counter()
    (step or (lambda message: None))("report: figures, model card and page")
    spec = result.bundle.spec
    categorical = (tuple(spec.categorical_columns), dict(spec.categorical_vocab))
    parts = figure_parts(data, categorical)
    job = FigureJob.start(parts, directory) if draw_apart else None
    files: dict[str, Path] = {}
    if data.learning is not None:
        files["report_learning_curve"] = write_table(data.learning, directory / "learning_curve.csv")
    if data.backtest is not None:
        files["report_backtest"] = write_table(data.backtest, directory / "backtest.csv")
    files["report_segments"] = write_table(data.segments, directory / "segments.csv")
    card = model_card(result, version=version, segments=data.segments, backtest=data.backtest,
                      learning=data.learning, intervals=data.intervals, n_boot=data.n_boot, seed=data.seed)
    files["report_model_card"] = write_text(card, directory / "model_card.md")
    title = f"Lead conversion model report{f' {version}' if version else ''}"
    return PendingReport(result, data, parts, directory, card, title, files, job, started)


def figure_parts(data: ReportData, categorical: tuple[tuple[str, ...], dict[str, Any]]) -> dict[str, Any]:
    """What the report's figures are drawn from (`training_plots.report_figures`): plain arrays and tables."""
    columns, vocab = categorical
    return {"y": data.y, "curves": data.curves, "roc_pr": training_plots.roc_pr_points(data.y, data.curves),
            "bands": data.bands, "contributions": data.contributions,
            "explained": data.explained, "learning": data.learning, "backtest": data.backtest,
            "categorical": tuple(columns), "vocab": dict(vocab)}


class FigureJob:
    """The report's figures being drawn by `python -m leadscore.presentation.figure_worker` from their pickled
    `figure_parts` (the test slice's labels and probabilities, sampled contributions: not the training data)."""

    def __init__(self, process: Any, payload: Path):
        self.process = process
        self.payload = payload

    @classmethod
    def start(cls, parts: dict[str, Any], directory: Path) -> FigureJob | None:
        """Start the worker; None where no separate Python can be started (the figures are then drawn here)."""
        import pickle
        import subprocess
        import sys
        import tempfile

        if not sys.executable:
            return None
        handle, name = tempfile.mkstemp(prefix="leadscore-figures-", suffix=".pickle")
        os.close(handle)
        payload = Path(name)
        try:
            write_bytes(pickle.dumps({"parts": parts, "directory": str(directory)}, protocol=pickle.HIGHEST_PROTOCOL),
                        payload)
            process = subprocess.Popen(
                [sys.executable, "-m", "leadscore.presentation.figure_worker", str(payload)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                env={**os.environ, "MPLBACKEND": "Agg"})
        except (OSError, pickle.PicklingError, TypeError, AttributeError) as exc:
            log.warning("drawing the report's figures here: could not start a separate process (%s)", exc)
            payload.unlink(missing_ok=True)
            return None
        return cls(process, payload)

    def wait(self) -> dict[str, Path] | None:
        """The figures' files, or None (with a warning naming the worker's error) when the worker failed."""
        import json

        try:
            out, err = self.process.communicate()
        finally:
            self.payload.unlink(missing_ok=True)
        if self.process.returncode != 0:
            lines = err.decode("utf-8", "replace").strip().splitlines()
            log.warning("drawing the report's figures here: the figure process failed (%s)",
                        lines[-1] if lines else f"exit status {self.process.returncode}")
            return None
        return {key: Path(path) for key, path in json.loads(out.decode("utf-8")).items()}

    def cancel(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.communicate()
        self.payload.unlink(missing_ok=True)


class PendingReport:
    """A report written but for its figures and page; `finish` completes it and returns every file."""

    def __init__(self, result: TrainResult, data: ReportData, parts: dict[str, Any], directory: Path, card: str,
                 title: str, files: dict[str, Path], job: FigureJob | None, started: float):
        self.result, self.data, self.parts, self.directory = result, data, parts, directory
        self.card, self.title, self.files, self.job, self.started = card, title, files, job, started
        self.done: dict[str, Path] | None = None

    def finish(self) -> dict[str, Path]:
        """Wait for the figures (drawing them here if no worker drew them), write report.html; name -> path."""
        if self.done is not None:
            return self.done
        images = self.job.wait() if self.job is not None else None
        self.job = None
        if images is None:
            images = training_plots.draw_report_figures(self.parts, self.directory)
        embedded = {key: base64.b64encode(path.read_bytes()).decode("ascii") for key, path in images.items()}
        files = dict(self.files)
        files["report_html"] = write_text(render_html(self.result, self.data, embedded, self.card, self.title),
                                          self.directory / "report.html")
        timings = {**self.data.timings, "figures_and_page": time.perf_counter() - self.started}
        log.info("report written to %s (%s)", self.directory, ", ".join(f"{k} {v:.1f}s" for k, v in timings.items()))
        self.done = {**images, **files}
        return self.done

    def cancel(self) -> None:
        """Stop the figure worker of a report that will not be finished."""
        if self.job is not None:
            self.job.cancel()
            self.job = None
