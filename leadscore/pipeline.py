"""Application layer: the functions the CLI commands and the notebooks call (train from files, run the demo).

It sits above `training` and `serve`, which never import each other.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from leadscore.features.checks import CheckReport, sort_problems
from leadscore.features.config import TrainConfig, config_to_dict
from leadscore.features.dataset import Dataset, load_dataset
from leadscore.features.errors import ConfigError
from leadscore.features.io import read_table, write_table, write_text
from leadscore.features.spec import LABEL
from leadscore.models.registry import (
    LoggedRun,
    RunInput,
    default_tracking_uri,
    describe_version,
    log_training_run,
    log_version_artifact,
    prepare_store,
    pyfunc_input,
    to_json,
)
from leadscore.presentation.checks import checks_page
from leadscore.presentation.figures import save_png
from leadscore.presentation.training_plots import gains_figure, reliability_figure
from leadscore.training.promotion import PromotionPolicy

if TYPE_CHECKING:
    from leadscore.presentation.model_report import PendingReport
from leadscore.training.train import (
    DataCheckFailed,
    HandedTable,
    TrainResult,
    prepare_training_data,
    train_model,
)

log = logging.getLogger(__name__)
Step = Callable[[str], None]


def _noop(_: str) -> None:
    return None


def write_run_artifacts(result: TrainResult, directory: str | os.PathLike, *, full_report: bool = True,
                        step: Step | None = None) -> dict[str, Path]:
    """The run's report (plots, model card, segments, backtest, report.html) and JSON summaries, in a folder.

    Keys starting with "plots" are PNGs; the caller logs everything with the MLflow run.
    """
    files, pending = start_run_artifacts(result, directory, full_report=full_report, step=step, draw_apart=False)
    return {**(pending.finish() if pending is not None else {}), **files}


def start_run_artifacts(result: TrainResult, directory: str | os.PathLike, *, full_report: bool = True,
                        step: Step | None = None, draw_apart: bool = True
                        ) -> tuple[dict[str, Path], PendingReport | None]:
    """`write_run_artifacts` with the full report's figures drawn apart (`start_report`): the files written so
    far, and the pending report (None for the quick one) whose `finish()` returns the rest."""
    from leadscore.presentation.model_report import start_report

    directory = Path(directory)
    pending = None
    if full_report:
        pending = start_report(result, directory, segment_columns=result.config.segment_columns, step=step,
                               draw_apart=draw_apart)
        files = {}
    else:  # the two essential plots only (quick runs, tests)
        test = result.test_frame
        from leadscore.training.train import _baseline_input

        curves = {"LightGBM (calibrated)": result.test_scores["probability"].to_numpy(),
                  "logistic baseline": result.baseline.predict_proba(_baseline_input(test))[:, 1]}
        files = {"plots": save_png(reliability_figure(test.y, curves), directory / "reliability.png"),
                 "plots_gains": save_png(gains_figure(test.y, curves), directory / "gains_lift.png")}
    files.update({
        "report_metrics": write_text(to_json(result.metrics), directory / "metrics.json"),
        "report_counts": write_text(to_json(result.counts), directory / "data_counts.json"),
        "report_config": write_text(to_json(config_to_dict(result.config)), directory / "train_config.json"),
    })
    if result.tuning is not None:
        files["report_tuning"] = write_table(result.tuning, directory / "tuning_trials.csv")
    if result.checks is not None:
        files["report_checks"] = write_text(result.checks.to_json(), directory / "data_checks.json")
        files["report_checks_html"] = write_text(checks_page(result.checks), directory / "data_checks.html")
    return files, pending


def train_and_log(
    leads: pd.DataFrame,
    outcomes: pd.DataFrame,
    events: pd.DataFrame | None,
    config: TrainConfig,
    *,
    workdir: str | os.PathLike,
    tracking_uri: str | None = None,
    truth: pd.Series | None = None,
    data_end: pd.Timestamp | None = None,
    sources: dict[str, str] | None = None,
    register: bool = True,
    full_report: bool = True,
    step: Step = _noop,
) -> tuple[TrainResult, LoggedRun]:
    """Train, write the report, log everything to MLflow, register the model and log its model card.

    `events` handed over (`HandedTable`) are summarised for the run's inputs first, then let go by training as
    soon as they are typed."""
    workdir = Path(workdir)
    tracking_uri = tracking_uri or default_tracking_uri(workdir)
    tables: dict[str, pd.DataFrame | RunInput | None] = {"leads": leads, "outcomes": outcomes, "events": events}
    if isinstance(events, HandedTable):
        tables["events"] = RunInput.summarised("events", events.peek(), "source")
    step("training LightGBM + logistic baseline (time split)")
    result = train_model(leads, outcomes, events, config, data_end=data_end, truth=truth, sources=sources,
                         step=step)
    del events
    step("writing the report (plots, model card, segments, backtest)")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    # The report's figures are drawn by another process while this one logs the run; the run's files are
    # logged once they are all written.
    files, pending = start_run_artifacts(result, workdir / "reports" / stamp, full_report=full_report, step=step)
    try:
        logged = _log_run(result, files, pending, tables, config, workdir, tracking_uri, stamp, sources,
                          register, step)
    finally:
        if pending is not None:
            pending.cancel()
    card = files.get("report_model_card") or next((p for p in files.values() if p.name == "model_card.md"), None)
    if card is not None and logged.version is not None:
        # The card was written before the version existed; log the versioned card with the run.
        text = card.read_text(encoding="utf-8").replace(
            "# Model card: lead conversion model",
            f"# Model card: {logged.registered_model} version {logged.version} ({logged.alias})", 1)
        write_text(text, card)
        log_version_artifact(logged.registered_model, logged.version, text, "model_card.md",
                             tracking_uri=tracking_uri)
        describe_version(logged.registered_model, logged.version, text, tracking_uri=tracking_uri)
    return result, logged


def _log_run(result: TrainResult, files: dict[str, Path], pending: PendingReport | None,
             tables: dict[str, pd.DataFrame | RunInput | None], config: TrainConfig, workdir: Path,
             tracking_uri: str, stamp: str, sources: dict[str, str] | None, register: bool, step: Step) -> LoggedRun:
    """Log the run to MLflow; the report's files (`files`, completed by `pending`) once they are all written."""
    step(f"logging to MLflow ({tracking_uri})")
    params = {"config": config_to_dict(config), "fit": {k: v for k, v in result.params.items() if k != "candidates"},
              "data": {k: v for k, v in result.counts.items() if not isinstance(v, dict)}}
    metrics = {f"test_{k}": v for k, v in result.metrics.items()}
    if result.candidates is not None:  # every candidate's cross-validated scores, beside the test metrics
        metrics["cv"] = {f"{row.candidate}_{key}": float(getattr(row, key))
                         for row in result.candidates.itertuples() for key in ("cv_log_loss", "cv_roc_auc")}
        files["report_candidates"] = write_table(result.candidates.assign(params=result.candidates["params"].map(str)),
                                                 workdir / "reports" / stamp / "candidates.csv")

    def artifacts() -> dict[str, list[Path]]:
        if pending is not None:
            done = {**pending.finish(), **files}  # the figures and the page first, as the report lists them
            files.clear()
            files.update(done)
        result.report_files = dict(files)
        groups: dict[str, list[Path]] = {"plots": [], "reports": []}
        for key, path in files.items():
            groups["plots" if key.startswith("plots") else "reports"].append(path)
        return groups

    return log_training_run(
        tracking_uri=tracking_uri,
        experiment=config.experiment,
        bundle=result.bundle,
        params=params,
        metrics=metrics,
        artifacts=artifacts,
        registered_model=config.registered_model if register else None,
        artifact_root=workdir / "mlartifacts" if tracking_uri.startswith("sqlite:") else None,
        run_name=f"train-{stamp}",
        input_example=pyfunc_input(result.bundle.spec, result.test_frame.features.head(5),
                                   ids=result.test_frame.ids.head(5)),
        inputs=training_inputs(result, tables, sources),
    )


def training_inputs(result: TrainResult, tables: dict[str, pd.DataFrame | RunInput | None],
                    sources: dict[str, str] | None = None) -> list[RunInput]:
    """What a training run logs as its inputs: each table as read (or as summarised before it was let go), and
    the feature rows of each slice."""
    sources = {k: v for k, v in (sources or {}).items() if v not in (None, "None")}
    inputs = [dataclasses.replace(frame, source=sources.get(name)) if isinstance(frame, RunInput)
              else RunInput(name, frame, "source", sources.get(name)) for name, frame in tables.items()
              if frame is not None]
    rows = result.frame.frame
    built = f"point-in-time features of {sources.get('leads', 'the leads')}"
    for context, mask in (("training", result.split.train), ("calibration", result.split.calibration),
                          ("test", result.split.test)):
        if mask.any():
            inputs.append(RunInput(f"features_{context}", rows.loc[mask], context, built, targets=LABEL))
    return inputs


def load_inputs(
    config: TrainConfig,
    *,
    leads_path: str | os.PathLike | None = None,
    outcomes_path: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    with_outcomes: bool = True,
) -> tuple[Dataset, TrainConfig]:
    """Read the inputs: the tables of `config.dataset` (files given here override it), or plain files.

    Returns the assembled dataset and the config with its data section naming the assembled columns.
    """
    if config.dataset is not None:
        ds = config.dataset
        if outcomes_path is not None:
            raise ConfigError("--outcomes cannot be combined with a dataset config (set dataset.outcomes)")
        if events_path is not None:
            raise ConfigError("--events cannot be combined with a dataset config (set dataset.events)")
        dataset = load_dataset(ds, config.data, leads_path=None if leads_path is None else str(leads_path),
                               with_outcomes=with_outcomes)
        return dataset, dataclasses.replace(config, data=dataset.data)
    if leads_path is None:
        raise ConfigError("no lead table: give --leads or a config with dataset.leads")
    leads = read_table(leads_path, what="leads")
    outcomes = read_table(outcomes_path, what="outcomes") if outcomes_path is not None and with_outcomes else None
    events = read_table(events_path, what="events") if events_path is not None else None
    sources = {"leads": str(leads_path), "outcomes": str(outcomes_path), "events": str(events_path)}
    return Dataset(leads, events, outcomes, config.data, sources), config


def train_from_files(
    leads_path: str | os.PathLike | None,
    outcomes_path: str | os.PathLike | None,
    events_path: str | os.PathLike | None,
    config: TrainConfig,
    *,
    workdir: str | os.PathLike = ".",
    tracking_uri: str | None = None,
    data_end: pd.Timestamp | None = None,
    step: Step = _noop,
) -> tuple[TrainResult, LoggedRun]:
    """Read leads/outcomes/events files (or a dataset config's tables) and run `train_and_log`."""
    tracking_uri = tracking_uri or default_tracking_uri(workdir)
    prepare_store(tracking_uri)  # a new store is made by another process while this one reads and trains
    step("reading input files")
    dataset, config = load_inputs(config, leads_path=leads_path, outcomes_path=outcomes_path,
                                  events_path=events_path)
    # The event log is handed over (no reference kept here), so training frees it once typed.
    events = None if dataset.events is None else HandedTable(dataset.events)
    leads, outcomes, sources = dataset.leads, dataset.outcomes, dataset.sources
    del dataset
    return train_and_log(leads, outcomes, events, config, workdir=workdir, tracking_uri=tracking_uri,
                         data_end=data_end, sources=sources, step=step)


def check_data(
    config: TrainConfig,
    *,
    leads_path: str | os.PathLike | None = None,
    outcomes_path: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    report_dir: str | os.PathLike | None = None,
    data_end: pd.Timestamp | None = None,
) -> tuple[CheckReport, dict[str, Path]]:
    """Run the data checks without training; write the JSON and HTML report when `report_dir` is given."""
    dataset, config = load_inputs(config, leads_path=leads_path, outcomes_path=outcomes_path,
                                  events_path=events_path)
    checks_only = dataclasses.replace(config, checks=dataclasses.replace(config.checks, stop_on_leaks=False))
    try:
        prepared = prepare_training_data(dataset.leads, dataset.outcomes, dataset.events, checks_only,
                                         data_end=data_end, sources=dataset.sources)
        report = prepared.checks
        if prepared.label_mapping is not None:
            report.summary["label_mapping"] = prepared.label_mapping.describe()
    except DataCheckFailed as exc:  # only the sufficiency gate is still fatal here
        report = exc.report
    files: dict[str, Path] = {}
    if report_dir is not None:
        report_dir = Path(report_dir)
        files["json"] = write_text(report.to_json(), report_dir / "data_checks.json")
        files["html"] = write_text(checks_page(report, f"Data checks: {dataset.sources['leads']}"),
                                   report_dir / "data_checks.html")
    if config.checks.stop_on_leaks:
        # Report what training would refuse, with the severity training would give it.
        for item in report.problems:
            if item["check"] in ("leak_auc", "leak_missingness"):
                item["severity"] = "fatal"
        sort_problems(report.problems)
    return report, files


def summary(result: TrainResult, logged: LoggedRun) -> dict[str, Any]:
    """The JSON-ready summary of a training run (what `--json` prints)."""
    keep = ("roc_auc", "pr_auc", "brier", "log_loss", "ece", "ece_noise_floor", "ece_noise_p95",
            "lift_top_decile", "calibration_in_the_large", "calibration_in_the_large_ci_low",
            "calibration_in_the_large_ci_high", "mae_vs_truth", "positive_rate", "n")
    return {
        "metrics": {name: {k: v for k, v in m.items() if k in keep} for name, m in result.metrics.items()},
        "learner": result.bundle.learner,
        "candidates": None if result.candidates is None else
        result.candidates.drop(columns=["params"]).to_dict(orient="records"),
        "label_mapping": None if result.label_mapping is None else result.label_mapping.to_dict(),
        "data": {k: v for k, v in result.counts.items() if not isinstance(v, dict)},
        "verdict": result.params.get("verdict"),
        "choice": result.params.get("choice"),
        "bands": result.bundle.bands.to_dict(),
        "features": {"numeric": list(result.bundle.spec.numeric_columns),
                     "categorical": list(result.bundle.spec.categorical_columns),
                     "events": list(result.bundle.spec.event_types)},
        "dropped_columns": dict(result.bundle.spec.dropped_columns),
        "report": {k: str(v) for k, v in result.report_files.items()
                   if k in ("report_html", "report_model_card", "report_checks_html")},
        "mlflow": {"tracking_uri": logged.tracking_uri, "run_id": logged.run_id, "model_uri": logged.model_uri,
                   "registered_model": logged.registered_model, "version": logged.version,
                   "alias": logged.alias, "registry_uri": logged.registry_uri},
    }


def run_demo(
    workdir: str | os.PathLike = "leadscore-demo",
    *,
    n_leads: int = 20_000,
    seed: int = 0,
    tracking_uri: str | None = None,
    step: Step = _noop,
) -> dict[str, Any]:
    """Generate the demo world, train and register a model, score a fresh lead list; return the summary."""
    from leadscore.demo_world import generate_demo_world, write_demo_world
    from leadscore.serve.batch import score_file
    from leadscore.serve.predictor import Predictor

    started = time.perf_counter()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or default_tracking_uri(workdir)
    prepare_store(tracking_uri)  # a new store is made by another process while this one generates and trains
    step(f"generating the demo world ({n_leads:,} leads, seed {seed})")
    world = generate_demo_world(n_leads=n_leads, seed=seed)
    paths = write_demo_world(world, workdir / "data")
    del world  # training reads the files back, as it would a CRM export; the world in memory is not needed again
    truth = read_table(paths["truth"]).set_index("lead_id")["true_probability"].astype("float64")
    result, logged = _demo_train(paths, truth, seed, workdir, tracking_uri, step)
    model_uri = logged.registry_uri or logged.model_uri
    step(f"scoring the fresh lead list with {model_uri}")
    predictor = Predictor.load(model_uri, tracking_uri=tracking_uri)
    scored_path = workdir / "scored_leads.csv"
    batch = score_file(predictor, paths["fresh_leads"], scored_path, events_path=paths["fresh_events"])
    fresh_truth = read_table(paths["fresh_truth"]).set_index("lead_id")["true_probability"].astype("float64")
    scored = read_table(scored_path)
    p = scored["probability"].astype("float64").to_numpy()
    t = scored["lead_id"].map(fresh_truth).astype("float64").to_numpy()
    out = summary(result, logged)
    out["scored"] = {**batch.to_dict(), "mae_vs_truth": float(abs(p - t).mean()),
                     "band_counts": scored["band"].value_counts().to_dict()}
    out["paths"] = {"workdir": str(workdir.resolve()), "data": str((workdir / "data").resolve()),
                    "scored_leads": str(scored_path.resolve()), "mlflow_store": tracking_uri}
    out["seconds"] = round(time.perf_counter() - started, 1)
    write_text(to_json(out), workdir / "summary.json")
    return out


def _demo_train(paths: dict[str, Path], truth: pd.Series, seed: int, workdir: Path, tracking_uri: str,
                step: Step) -> tuple[TrainResult, LoggedRun]:
    step("reading the demo files back (the same path as a CRM export)")
    leads = read_table(paths["leads"], what="leads")
    outcomes = read_table(paths["outcomes"], what="outcomes")
    events = HandedTable(read_table(paths["events"], what="events"))  # freed by training once typed
    sources = {"leads": str(paths["leads"]), "outcomes": str(paths["outcomes"]), "events": str(paths["events"])}
    return train_and_log(leads, outcomes, events, TrainConfig(seed=seed), workdir=workdir,
                         tracking_uri=tracking_uri, truth=truth, sources=sources, step=step)


def compare_with_rules(
    model_uri: str,
    config: TrainConfig,
    *,
    rules_path: str | os.PathLike | None = None,
    rule_score_column: str | None = None,
    leads_path: str | os.PathLike | None = None,
    outcomes_path: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    window: str = "test",
    capacity_per_week: int | None = None,
    telemarketing_per_week: int | None = None,
    report_dir: str | os.PathLike = "comparison",
    tracking_uri: str | None = None,
    log: bool = True,
    step: Step = _noop,
) -> dict[str, Any]:
    """Learned score vs manual rules on the same held-out leads: report files, MLflow run, headline numbers."""
    from leadscore.models.registry import log_comparison
    from leadscore.models.rules import ColumnRuleScorer, RuleScorer, load_rules
    from leadscore.presentation.comparison import write_comparison_report
    from leadscore.serve.predictor import Predictor
    from leadscore.training.compare import compare_model_and_rules

    if (rules_path is None) == (rule_score_column is None):
        raise ConfigError("give exactly one of --rules FILE or --rule-score-col COLUMN")
    tracking_uri = tracking_uri or default_tracking_uri()
    step(f"loading {model_uri}")
    predictor = Predictor.load(model_uri, tracking_uri=tracking_uri)
    spec = predictor.spec
    step("reading leads, outcomes and events")
    dataset, config = load_inputs(config, leads_path=leads_path, outcomes_path=outcomes_path,
                                  events_path=events_path)
    if rules_path is not None:
        rules = RuleScorer(load_rules(rules_path), id_column=spec.id_column, event_lead_id=spec.event_lead_id,
                           event_time=spec.event_time, event_type=spec.event_type,
                           source=dataset.sources["leads"], events_source=dataset.sources["events"])
    else:
        rules = ColumnRuleScorer(rule_score_column, id_column=spec.id_column, source=dataset.sources["leads"])
    step("scoring the same leads with the model and the rules")
    comparison = compare_model_and_rules(predictor, rules, dataset.leads, dataset.outcomes, dataset.events,
                                         labels_from=config.data.label, window=window,
                                         capacity_per_week=capacity_per_week,
                                         telemarketing_per_week=telemarketing_per_week)
    if rule_score_column is not None:
        comparison = dataclasses.replace(comparison, notes=comparison.notes + (
            f"The rule score comes from column {rule_score_column!r} of the export, a snapshot taken at export "
            f"time: it may already reflect activity after each lead's as_of (even after conversion), so this is "
            f"not a point-in-time comparison and favours the rules. Score the rules with --rules for a fair one.",))
    files = write_comparison_report(comparison, report_dir)
    run_id = None
    if log:
        step(f"logging the comparison to MLflow ({tracking_uri})")
        params = {"model_uri": model_uri, "rules": None if rules_path is None else str(rules_path),
                  "rule_score_column": rule_score_column, "window": window, "capacity_per_week": capacity_per_week,
                  "telemarketing_per_week": telemarketing_per_week, "label": config.data.label,
                  **{f"{k}_source": v for k, v in dataset.sources.items()}}
        inputs = [RunInput(name, frame, "evaluation", dataset.sources.get(name))
                  for name, frame in (("leads", dataset.leads), ("outcomes", dataset.outcomes),
                                      ("events", dataset.events)) if frame is not None]
        run_id = log_comparison(tracking_uri=tracking_uri, experiment=config.experiment, files=files,
                                metrics=comparison.flat_metrics(), run_name="compare-rules", params=params,
                                model_uri=model_uri, inputs=inputs)
    return {**comparison.summary(), "files": {k: str(v) for k, v in files.items()}, "mlflow_run_id": run_id,
            "headline_text": comparison.headline_text}


def promote(
    config: TrainConfig,
    *,
    leads_path: str | os.PathLike | None = None,
    outcomes_path: str | os.PathLike | None = None,
    events_path: str | os.PathLike | None = None,
    policy: PromotionPolicy | None = None,
    tracking_uri: str | None = None,
    dry_run: bool = False,
    step: Step = _noop,
) -> dict[str, Any]:
    """Compare challenger and champion on the same most-recent test window; move `champion` only if allowed.

    The window is the challenger's held-out test window (leads with as_of >= its test start), labelled the
    challenger's way; both models score exactly those leads as of the same times.
    """
    from leadscore.features.spec import AS_OF, LABEL
    from leadscore.models.metrics import classification_metrics
    from leadscore.models.registry import (
        CHALLENGER,
        CHAMPION,
        PREVIOUS_CHAMPION,
        delete_alias,
        registered_alias,
        set_alias,
        tag_version,
    )
    from leadscore.serve.predictor import Predictor
    from leadscore.training.compare import label_like_model, test_window
    from leadscore.training.promotion import PromotionDecision, decide

    policy = policy or PromotionPolicy()
    tracking_uri = tracking_uri or default_tracking_uri()
    name = config.registered_model
    champion_v = registered_alias(name, CHAMPION, tracking_uri=tracking_uri)
    challenger_v = registered_alias(name, CHALLENGER, tracking_uri=tracking_uri)
    if challenger_v is None:
        raise ConfigError(f"model {name!r} has no '{CHALLENGER}' version to promote (in {tracking_uri})")
    challenger = Predictor.load(f"models:/{name}/{challenger_v}", tracking_uri=tracking_uri)
    if champion_v is None:
        if not dry_run:
            set_alias(name, CHAMPION, challenger_v, tracking_uri=tracking_uri)
            delete_alias(name, CHALLENGER, tracking_uri=tracking_uri)
        return PromotionDecision(True, ["there was no champion"], {}, {"version": challenger_v}).to_dict()
    champion = Predictor.load(f"models:/{name}/{champion_v}", tracking_uri=tracking_uri)
    step(f"champion v{champion_v} vs challenger v{challenger_v}: reading the evaluation data")
    dataset, config = load_inputs(config, leads_path=leads_path, outcomes_path=outcomes_path,
                                  events_path=events_path)
    labelled, how = label_like_model(challenger, dataset.leads, dataset.outcomes, dataset.events,
                                     labels_from=config.data.label)
    rows = labelled.leads
    window: dict[str, Any] = {"labels": how}
    starts = [(p.bundle.meta.get("training_window") or {}).get("test_start") for p in (champion, challenger)]
    dated = rows[AS_OF].notna().all()
    # The later of the two test starts: neither model trained or calibrated on any lead compared.
    rows, test_start = test_window(rows, starts)
    if test_start is not None:
        window.update(kind="challenger's test window", test_start=test_start.isoformat())
    else:
        window.update(kind="all given leads (no time-split test window): pass leads neither model trained on")
    if len(rows) == 0 or rows[LABEL].nunique() < 2:
        raise ConfigError("promote: the evaluation window needs labelled leads of both classes")
    inputs = rows.drop(columns=[LABEL] if dated else [LABEL, AS_OF])
    step(f"scoring {len(rows):,} leads with both models")
    y = rows.set_index(challenger.spec.id_column)[LABEL]
    metrics = {}
    for who, predictor in (("champion", champion), ("challenger", challenger)):
        scored = predictor.score(inputs, dataset.events, reasons=False)
        metrics[who] = classification_metrics(y.loc[scored[predictor.spec.id_column]].to_numpy(),
                                              scored["probability"].to_numpy())
    ok, reasons = decide(metrics["champion"], metrics["challenger"], policy)
    window["n_leads"] = len(rows)
    decision = PromotionDecision(ok, reasons, {"version": champion_v, **metrics["champion"]},
                                 {"version": challenger_v, **metrics["challenger"]}, window,
                                 {"auc_tolerance": policy.auc_tolerance, "max_ece": policy.max_ece})
    if not dry_run:
        verdict = "promoted" if ok else "refused"
        tag_version(name, challenger_v, {"promotion": verdict, "promotion_reasons": "; ".join(reasons)},
                    tracking_uri=tracking_uri)
        if ok:
            set_alias(name, PREVIOUS_CHAMPION, champion_v, tracking_uri=tracking_uri)
            set_alias(name, CHAMPION, challenger_v, tracking_uri=tracking_uri)
            delete_alias(name, CHALLENGER, tracking_uri=tracking_uri)
    return {**decision.to_dict(), "dry_run": dry_run}


def rollback(config: TrainConfig, *, tracking_uri: str | None = None) -> dict[str, Any]:
    """Move `champion` back to the version it replaced (the `previous-champion` alias); swap the two."""
    from leadscore.models.registry import CHAMPION, PREVIOUS_CHAMPION, registered_alias, set_alias

    tracking_uri = tracking_uri or default_tracking_uri()
    name = config.registered_model
    previous = registered_alias(name, PREVIOUS_CHAMPION, tracking_uri=tracking_uri)
    current = registered_alias(name, CHAMPION, tracking_uri=tracking_uri)
    if previous is None:
        raise ConfigError(f"model {name!r} has no '{PREVIOUS_CHAMPION}' version to roll back to")
    set_alias(name, CHAMPION, previous, tracking_uri=tracking_uri)
    if current is not None:
        set_alias(name, PREVIOUS_CHAMPION, current, tracking_uri=tracking_uri)
    return {"champion": previous, "previous_champion": current}


SCORING_EXPERIMENT = "lead-scoring"


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
    from leadscore.presentation.scoring import scoring_report_html

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
