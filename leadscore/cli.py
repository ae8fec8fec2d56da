"""The `leadscore` command: thin typer commands over the functions in `leadscore.pipeline` and `serve`.

Heavy libraries (pandas, LightGBM, MLflow) are imported inside the commands so `--help` stays fast.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from leadscore import __version__

app = typer.Typer(
    name="leadscore",
    help="Lead conversion scores you can trust: calibrated probabilities, readable reasons, MLflow tracking.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

TrackingOpt = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                 "sqlite:///<workdir>/mlflow.db)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object on stdout.")]


def _console(stderr: bool = True):
    from rich.console import Console

    console = Console(stderr=stderr)
    if not console.is_terminal:
        console.width = 120  # piped or captured output: do not wrap tables at 80 columns
    return console


def _fail(message: str) -> None:
    _console().print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code=2)


def _run(func, *args, **kwargs):
    """Run a command body; bad input becomes a one-line error and exit code 2, never a traceback."""
    from leadscore.features.errors import ConfigError, DataError

    try:
        return func(*args, **kwargs)
    except (DataError, ConfigError) as exc:
        _fail(str(exc))
    except (typer.Exit, typer.Abort, KeyboardInterrupt):
        raise
    except OSError as exc:  # a disk, permission or path problem the checks before the work could not foresee
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}")
    except MemoryError:
        _fail("out of memory; score the list in parts or on a larger machine")
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, the traceback only with -v
        logging.getLogger("leadscore").debug("internal error", exc_info=True)
        if logging.getLogger().isEnabledFor(logging.INFO):
            import traceback

            traceback.print_exc()
        _fail(f"internal error ({type(exc).__name__}: {exc}); please report it with the output of --verbose")


def _steps(quiet: bool):
    """Progress of a job in stages: one line per stage, with the time since the job started."""
    import time

    console = _console()
    started = time.monotonic()

    def step(message: str) -> None:
        if not quiet:
            console.print(f"[cyan]>[/] {message} [dim]({time.monotonic() - started:,.0f} s)[/]", highlight=False)

    return step


class _RowProgress:
    """Progress of a long job over rows: a rich bar (rows, rows/s, ETA) on a terminal, else a plain line on
    stderr at most every `every` seconds (and at the end), so logs of piped runs show it too."""

    def __init__(self, what: str, *, quiet: bool = False, every: float = 5.0) -> None:
        import time

        self.console = _console()
        self.what, self.quiet, self.every = what, quiet, every
        self.bar = self.task = None
        self.started = self.last = time.monotonic()

    def __enter__(self):
        if not self.quiet and self.console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), console=self.console,
                                transient=True)
            self.bar.__enter__()
            self.task = self.bar.add_task(self.what, total=None, rate="")
        return self

    def __call__(self, done: int, total: int, what: str | None = None) -> None:
        import time

        if self.quiet:
            return
        now = time.monotonic()
        if what is not None and what != self.what:  # a new stage of the job: its own rate and first line
            self.what, self.started, self.last = what, now, now - self.every
            if self.bar is not None:
                self.bar.update(self.task, description=what, completed=0, total=None)
        elapsed = now - self.started
        # No rate from the first instant of a stage, unless the stage is already done.
        rate = done / elapsed if elapsed > 0.2 or (done >= total and elapsed > 0) else None
        speed = f"{rate:,.0f} rows/s" if rate else "starting"
        if self.bar is not None:
            self.bar.update(self.task, completed=done, total=total, rate=speed)
        elif now - self.last >= self.every or done >= total:
            eta = f", ETA {(total - done) / rate:,.0f} s" if rate else ""
            self.console.print(f"[cyan]>[/] {self.what}: {done:,} of {total:,} ({speed}{eta})", highlight=False)
            self.last = now

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.__exit__(*exc)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"leadscore {__version__}")
        raise typer.Exit()


@app.callback()
def main_callback(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details to stderr.")] = False,
    threads: Annotated[int, typer.Option("--threads", min=0, help="Threads for LightGBM, DuckDB and the reasons "
                                                                  "kernel (0: the CPUs this process may use, "
                                                                  "cgroup quota included).")] = 0,
) -> None:
    """Lead conversion scores you can trust."""
    from leadscore.runtime import passive_waiting, set_threads

    passive_waiting()  # before LightGBM loads: waiting threads sleep instead of spinning on a shared machine
    set_threads(threads)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, stream=sys.stderr,
                        format="%(levelname)s %(name)s: %(message)s")


def _metrics_table(summary: dict):
    from rich.table import Table

    table = Table(title="Held-out test slice")
    table.add_column("model", overflow="fold")
    has_truth = any(m.get("mae_vs_truth") is not None for m in summary["metrics"].values())
    cols = ["ROC AUC", "PR AUC", "Brier", "ECE", "ECE noise", "mean-obs", "lift@10%"] + (["|p-truth|"] if has_truth
                                                                                       else [])
    for col in cols:
        table.add_column(col, justify="right")
    learner = summary.get("learner") or "LightGBM"
    names = {"model": f"{learner}, calibrated", "model_uncalibrated": f"{learner}, raw margin",
             "baseline": "logistic baseline"}
    for key, label in names.items():
        m = summary["metrics"].get(key)
        if not m:
            continue
        cells = [f"{m['roc_auc']:.3f}", f"{m['pr_auc']:.3f}", f"{m['brier']:.4f}", f"{m['ece']:.4f}",
                 f"{m['ece_noise_p95']:.4f}", f"{m['calibration_in_the_large']:+.4f}", f"{m['lift_top_decile']:.2f}"]
        if has_truth:
            cells.append(f"{m['mae_vs_truth']:.4f}")
        table.add_row(label, *cells)
    return table


def _candidates_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="Learners, cross-validated on the training leads (lowest log loss wins; ties, and a more "
                        "complex learner that ranks no better, go to the simpler)")
    for col in ("learner", "CV log loss", "CV ROC AUC", "calibration", "chosen"):
        table.add_column(col, justify="left" if col in ("learner", "calibration") else "right")
    for row in rows:
        table.add_row(row["candidate"], f"{row['cv_log_loss']:.4f}", f"{row['cv_roc_auc']:.3f}", row["calibration"],
                      "yes" if row["chosen"] else "")
    return table


def _show_training(result: dict, as_json: bool):
    """Print a training summary (JSON, or the table and counts); returns the console for more lines."""
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return None
    console = _console(stderr=False)
    if result.get("label_mapping"):
        console.print(result["label_mapping"]["text"], highlight=False)
    if result.get("candidates"):
        console.print(_candidates_table(result["candidates"]))
        if result.get("choice"):
            console.print(f"Chosen: {result['choice']}.", highlight=False)
    console.print(_metrics_table(result))
    data = result["data"]
    left_out = ""
    if data.get("converted_before_as_of") or data.get("immature"):
        left_out = (f" Left out: {data['converted_before_as_of']:,} converted before as_of, "
                    f"{data['immature']:,} immature (window not closed).")
    if data.get("open_outcome"):
        left_out += f" Left out: {data['open_outcome']:,} with an open outcome (--open)."
    if data.get("converted_before_created"):
        left_out += (f" Left out: {data['converted_before_created']:,} converted before they were created "
                     f"(--exclude-early-conversions).")
    slices = (f"train {data['train_rows']:,} ({data['cross_fit_folds']}-fold cross-fit) / test {data['test_rows']:,}"
              if data.get("cross_fit_folds") else
              f"train {data['train_rows']:,} / calibration {data['calibration_rows']:,} / test {data['test_rows']:,}")
    method = data["method"]
    if data.get("created_column_detected"):
        method += (f" on {data['created_column_detected']!r}, the creation time found by its name; "
                   f"--date COLUMN names another")
    console.print(f"Leads: {data['leads']:,}; labelled {data['labelled']:,} ({data['positives']:,} converted)."
                  f"{left_out} Split ({method}): {slices}.", highlight=False)
    verdict = result.get("verdict")
    if verdict:
        style = {"no_signal": "bold red", "baseline_better": "bold yellow"}.get(verdict["verdict"], "bold green")
        console.print(f"[{style}]{verdict['text']}[/]", highlight=False)
    feats = result.get("features", {})
    if feats:
        console.print(f"Features: {len(feats['numeric'])} numeric ({', '.join(feats['numeric']) or '-'}); "
                      f"{len(feats['categorical'])} categorical ({', '.join(feats['categorical']) or '-'}); "
                      f"{len(feats['events'])} event types.", highlight=False)
    if result.get("dropped_columns"):
        dropped = "; ".join(f"{k} ({v})" for k, v in result["dropped_columns"].items())
        console.print(f"Not used as features: {dropped}", highlight=False)
    return console


@app.command()
def demo(
    workdir: Annotated[Path, typer.Option(help="Folder for the demo data, MLflow store and outputs.")] = Path(
        "leadscore-demo"),
    n_leads: Annotated[int, typer.Option("--n-leads", min=2000, help="Leads in the generated history.")] = 20_000,
    seed: Annotated[int, typer.Option(help="Random seed of the demo world and the model.")] = 0,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Generate a demo CRM world, train and register a calibrated model, and score a fresh lead list."""
    from leadscore.pipeline import run_demo

    result = _run(run_demo, workdir, n_leads=n_leads, seed=seed, tracking_uri=tracking_uri,
                  step=_steps(as_json))
    console = _show_training(result, as_json)
    if console is None:
        return
    mlf = result["mlflow"]
    scored = result["scored"]
    console.print(f"MLflow store: {mlf['tracking_uri']}  run {mlf['run_id']}", highlight=False)
    console.print(f"Registered:   {mlf['registry_uri'] or mlf['model_uri']} (version {mlf['version']})",
                  highlight=False)
    console.print(f"Scored file:  {scored['output']} ({scored['scored_rows']:,} leads, "
                  f"{scored['rejected_rows']} rejected; mean |p - truth| {scored['mae_vs_truth']:.4f})",
                  highlight=False)
    console.print(f"Open the UI:  mlflow ui --backend-store-uri {mlf['tracking_uri']}", highlight=False)


LeadsOpt = Annotated[Path | None, typer.Option(help="Lead table (CSV or Parquet): id, created_at, attributes "
                                                   "(or dataset.leads in --config).")]
OutcomesOpt = Annotated[Path | None, typer.Option(help="Outcomes table: lead id and converted_at (empty = not "
                                                       "converted), or a --label column.")]
EventsOpt = Annotated[Path | None, typer.Option(help="Activity events: lead id, timestamp, event_type.")]
LabelOpt = Annotated[str | None, typer.Option(help="An outcome column (in the leads or outcomes table) instead of "
                                                   "converted_at: 0/1, yes/no, Won/Lost, or any values with "
                                                   "--positive.")]
PositiveOpt = Annotated[list[str] | None, typer.Option("--positive", help="Label value that means converted, e.g. "
                                                                        "Won (repeatable; other values are 0).")]
OpenOpt = Annotated[list[str] | None, typer.Option("--open", help="Label value of leads still in progress: left out "
                                                                "of training and counted (repeatable).")]
EarlyOpt = Annotated[bool, typer.Option("--exclude-early-conversions", help="Leave out (and count) leads whose "
                                                                          "conversion is dated before their "
                                                                          "creation, instead of stopping.")]
IdOpt = Annotated[str | None, typer.Option("--id", help="Lead id column (default lead_id).")]
DateOpt = Annotated[str | None, typer.Option("--date", help="Lead creation time column (default created_at); "
                                                            "without one the split is random.")]
DropOpt = Annotated[list[str] | None, typer.Option(help="Column never to use as a feature (repeatable).")]
NaOpt = Annotated[list[str] | None, typer.Option("--na-value", help="A cell value meaning missing, e.g. "
                                                                    "Select (repeatable).")]
DecimalOpt = Annotated[str | None, typer.Option(help="Parse numbers written with currency/thousands separators, "
                                                     "with this decimal mark: ',' or '.'.")]
AllowOpt = Annotated[list[str] | None, typer.Option(help="Column the leakage probes may let through after you "
                                                         "checked it (repeatable).")]
ConfigOpt = Annotated[Path | None, typer.Option(help="YAML config (dataset tables, columns, windows, model, "
                                                     "bands, checks).")]
DataEndOpt = Annotated[str | None, typer.Option(help="Extract date of the data (default: latest timestamp seen).")]


def _train_config(config: Path | None, *, label=None, id_col=None, date_col=None, drop=None, na_value=None,
                  decimal=None, allow=None, positive=None, open_values=None, exclude_early=False):
    """The config file (or defaults) with the command-line options applied on top."""
    import dataclasses

    from leadscore.features.config import TrainConfig, load_config

    cfg = load_config(config) if config else TrainConfig()
    data = cfg.data
    overrides = {k: v for k, v in (("label", label), ("lead_id", id_col), ("created_at", date_col),
                                   ("decimal", decimal)) if v is not None}
    if id_col and data.event_lead_id == "lead_id" and cfg.dataset is None:
        overrides["event_lead_id"] = id_col
    if drop:
        excluded = data.excluded
        excluded.update({c: "dropped on the command line (--drop)" for c in drop})
        overrides["exclude"] = excluded
    if na_value:
        overrides["na_values"] = tuple(data.na_values) + tuple(na_value)
    if allow:
        overrides["allow_columns"] = tuple(data.allow_columns) + tuple(allow)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(data, **overrides))
    if positive or open_values:
        lab = cfg.label
        cfg = dataclasses.replace(cfg, label=dataclasses.replace(
            lab, positive=tuple(positive) if positive else lab.positive,
            open=tuple(open_values) if open_values else lab.open))
    if exclude_early:
        cfg = dataclasses.replace(cfg, label=dataclasses.replace(cfg.label, converted_before_created="exclude"))
    return cfg


def _timestamp(value: str | None, option: str):
    import pandas as pd

    from leadscore.features.errors import ConfigError

    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: cannot parse {value!r} as a date") from exc
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


@app.command()
def train(
    leads: LeadsOpt = None,
    outcomes: OutcomesOpt = None,
    events: EventsOpt = None,
    label: LabelOpt = None,
    positive: PositiveOpt = None,
    open_values: OpenOpt = None,
    exclude_early: EarlyOpt = False,
    id_col: IdOpt = None,
    date_col: DateOpt = None,
    drop: DropOpt = None,
    na_value: NaOpt = None,
    decimal: DecimalOpt = None,
    allow: AllowOpt = None,
    config: ConfigOpt = None,
    workdir: Annotated[Path, typer.Option(help="Folder for reports and the default MLflow store.")] = Path("."),
    data_end: DataEndOpt = None,
    tune: Annotated[int, typer.Option(help="Trials of a hyperparameter search (Optuna, time-series CV); 0 = "
                                           "defaults with early stopping.")] = 0,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check the data, train on your leads (and events, outcomes), log the run to MLflow, register the model."""
    from leadscore.pipeline import summary, train_from_files

    def body():
        cfg = _train_config(config, label=label, id_col=id_col, date_col=date_col, drop=drop, na_value=na_value,
                            decimal=decimal, allow=allow, positive=positive, open_values=open_values,
                            exclude_early=exclude_early)
        if tune:
            import dataclasses

            cfg = dataclasses.replace(cfg, tune_trials=tune)
        result, logged = train_from_files(leads, outcomes, events, cfg, workdir=workdir, tracking_uri=tracking_uri,
                                          data_end=_timestamp(data_end, "--data-end"), step=_steps(as_json))
        return summary(result, logged)

    result = _run(body)
    console = _show_training(result, as_json)
    if console is None:
        return
    mlf = result["mlflow"]
    console.print(f"Registered: {mlf['registry_uri'] or mlf['model_uri']} (version {mlf['version']}); "
                  f"run {mlf['run_id']} in {mlf['tracking_uri']}", highlight=False)


@app.command("check-data")
def check_data_command(
    leads: LeadsOpt = None,
    outcomes: OutcomesOpt = None,
    events: EventsOpt = None,
    label: LabelOpt = None,
    positive: PositiveOpt = None,
    open_values: OpenOpt = None,
    exclude_early: EarlyOpt = False,
    id_col: IdOpt = None,
    date_col: DateOpt = None,
    drop: DropOpt = None,
    na_value: NaOpt = None,
    decimal: DecimalOpt = None,
    allow: AllowOpt = None,
    config: ConfigOpt = None,
    report: Annotated[Path | None, typer.Option(help="Folder for data_checks.json and data_checks.html.")] = None,
    data_end: DataEndOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Profile the data and probe for leaks without training. Exit code 1 when training would refuse it."""
    from leadscore.pipeline import check_data

    def body():
        cfg = _train_config(config, label=label, id_col=id_col, date_col=date_col, drop=drop, na_value=na_value,
                            decimal=decimal, allow=allow, positive=positive, open_values=open_values,
                            exclude_early=exclude_early)
        return check_data(cfg, leads_path=leads, outcomes_path=outcomes, events_path=events, report_dir=report,
                          data_end=_timestamp(data_end, "--data-end"))

    found, files = _run(body)
    if as_json:
        typer.echo(json.dumps({**found.to_dict(), "files": {k: str(v) for k, v in files.items()}}, default=str))
    else:
        _show_checks(found, files)
    if found.fatal:
        raise typer.Exit(code=1)


def _show_checks(found, files) -> None:
    from rich.table import Table

    console = _console(stderr=False)
    cols = Table(title="Columns (highest single-column AUC first)")
    for name in ("column", "role", "missing", "distinct", "AUC alone", "AUC filled-in"):
        cols.add_column(name, overflow="fold")
    for row in found.columns.to_dict(orient="records"):
        auc = "" if row["auc_alone"] is None or row["auc_alone"] != row["auc_alone"] else f"{row['auc_alone']:.3f}"
        nn = "" if row["auc_non_null"] is None or row["auc_non_null"] != row["auc_non_null"] \
            else f"{row['auc_non_null']:.3f}"
        cols.add_row(str(row["column"]), str(row["role"]), f"{row['missing_rate']:.1%}", str(row["distinct"]), auc, nn)
    console.print(cols)
    s = found.summary
    if s.get("label_mapping"):
        console.print(s["label_mapping"], highlight=False)
    console.print(f"Labelled leads: {s['labelled_leads']:,}; conversions {s['positives']:,} "
                  f"({s['positive_rate']:.1%}).", highlight=False)
    colour = {"fatal": "bold red", "warning": "yellow", "info": "dim"}
    for item in found.problems:
        where = f" [{item['column']}]" if item["column"] else ""
        console.print(f"[{colour[item['severity']]}]{item['severity']}[/] {item['check']}{where}: "
                      f"{item['message']}", highlight=False)
    if not found.problems:
        console.print("No problems found.")
    for kind, path in files.items():
        console.print(f"Report ({kind}): {path}", highlight=False)


@app.command()
def score(
    model: Annotated[str, typer.Option(help="models:/lead-conversion@champion, runs:/<id>/model or a folder.")],
    out: Annotated[Path, typer.Option(help="Output file (.csv or .parquet); rejects go beside it.")],
    leads: Annotated[Path | None, typer.Option(help="Lead list to score (CSV or Parquet).")] = None,
    config: Annotated[Path | None, typer.Option(help="Dataset config: assemble the list like training did "
                                                     "(joins, event sources); --leads overrides its lead table.")]
    = None,
    events: Annotated[Path | None, typer.Option(help="Activity events of these leads.")] = None,
    as_of: Annotated[str | None, typer.Option(help="Score as of this time; 'created' for each lead's creation + "
                                                   "the model's as_of days (default: the leads' as_of column, else "
                                                   "now).")] = None,
    reasons: Annotated[str, typer.Option(help="top: the top 3 reasons per lead; none: scores only (fastest); "
                                              "all: the top reasons and every feature's contribution "
                                              "(contribution_<feature> columns).")] = "top",
    no_reasons: Annotated[bool, typer.Option("--no-reasons", help="Same as --reasons none.")] = False,
    explain_top: Annotated[int | None, typer.Option(min=0, help="Reasons only for the K highest-scored leads "
                                                               "of the list (the rest keep empty reason "
                                                               "columns).")] = None,
    keep: Annotated[list[str] | None, typer.Option(help="Input column to copy into the output "
                                                        "(repeatable).")] = None,
    strict: Annotated[bool, typer.Option(help="Stop (exit 2, nothing written) when the input does not look like "
                                              "training's: events matching few leads, unseen categories, missing "
                                              "columns, implausible values.")] = False,
    dedupe_events: Annotated[bool, typer.Option(help="Drop repeated event rows (same lead, time and type) "
                                                     "instead of counting them twice.")] = False,
    chunk_size: Annotated[int, typer.Option(min=1, help="Leads scored per chunk (memory against speed).")]
    = 50_000,
    engine: Annotated[str, typer.Option(help="duckdb (this machine) or spark (the same features and model on "
                                             "Spark; needs the spark extra).")] = "duckdb",
    spark_master: Annotated[str, typer.Option(help="Spark master for --engine spark (local[N], yarn, "
                                                   "spark://host:7077).")] = "local[*]",
    report: Annotated[Path | None, typer.Option(help="Also write an HTML page of the run: counts, warnings, "
                                                     "expected conversions, drift per feature.")] = None,
    log_run: Annotated[bool, typer.Option(help="Log the run (counts, expected conversions, drift, the HTML "
                                               "page) to the model's tracking store, linked to its version "
                                               "(models:/ and runs:/ models).")] = True,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score a lead list: probability, 0-100 score, band and top reasons; every row ends in output or rejects."""
    from leadscore.features.errors import ConfigError
    from leadscore.models.registry import default_tracking_uri
    from leadscore.models.scorer import reason_mode
    from leadscore.serve.batch import score_file, score_frames
    from leadscore.serve.predictor import Predictor

    def body():
        result = run_engine()
        if report is not None:
            from leadscore.features.io import write_text
            from leadscore.presentation.scoring import scoring_report_html

            write_text(scoring_report_html(result, title=f"Scoring run: {Path(out).name}"), report)
        if log_run and ("://" in model or ":/" in model):
            from leadscore.pipeline import record_scoring_run

            try:
                run_id = record_scoring_run(result, model_uri=model, tracking_uri=tracking_uri or
                                            default_tracking_uri(), engine=engine,
                                            inputs={"leads": None if leads is None else str(leads),
                                                    "events": None if events is None else str(events),
                                                    "config": None if config is None else str(config),
                                                    "as_of": as_of})
                logged.append(run_id)
            except Exception as exc:  # the scores are written; a tracking hiccup must not hide them
                warned.append(f"the run was not logged to the tracking store ({type(exc).__name__}: {exc})")
        return result

    logged: list[str] = []
    warned: list[str] = []

    def run_engine():
        uri = tracking_uri or default_tracking_uri()
        if engine not in ("duckdb", "spark"):
            raise ConfigError(f"--engine: {engine!r} is not an engine (duckdb or spark)")
        try:
            mode = "none" if no_reasons else reason_mode(reasons)
        except ValueError as exc:
            raise ConfigError(f"--reasons: {reasons!r} is not one of top, none, all") from exc
        if engine == "spark":
            if config is not None or leads is None:
                raise ConfigError("--engine spark scores plain files: give --leads (and --events), not --config")
            if explain_top is not None:
                raise ConfigError("--explain-top is not available with --engine spark")
            from leadscore.serve.spark import score_spark_files

            return score_spark_files(model, str(leads), out, events_path=None if events is None else str(events),
                                     as_of=as_of, reasons=mode, keep_columns=keep or (), strict=strict,
                                     dedupe_events=dedupe_events, tracking_uri=uri, master=spark_master)
        predictor = Predictor.load(model, tracking_uri=uri)
        if config is None:
            if leads is None:
                raise ConfigError("give --leads (or --config with dataset.leads)")
            with _RowProgress("scoring leads", quiet=as_json) as progress:
                return score_file(predictor, leads, out, events_path=events, as_of=as_of, reasons=mode,
                                  explain_top=explain_top, keep_columns=keep or (), strict=strict,
                                  dedupe_events=dedupe_events, chunk_size=chunk_size, progress=progress)
        # A dataset config assembles the lead list like training did: lookup joins and event sources.
        from leadscore.features.config import load_config
        from leadscore.features.dataset import load_dataset

        cfg = load_config(config)
        if cfg.dataset is None:
            raise ConfigError(f"{config}: no dataset section; score plain files with --leads/--events")
        if events is not None:
            raise ConfigError("--events cannot be combined with a dataset config (set dataset.events)")
        dataset = load_dataset(cfg.dataset, cfg.data, leads_path=None if leads is None else str(leads),
                               with_outcomes=False)
        with _RowProgress("scoring leads", quiet=as_json) as progress:
            return score_frames(predictor, dataset.leads, out, events=dataset.events, as_of=as_of,
                                reasons=mode, explain_top=explain_top, keep_columns=keep or (),
                                sources=dataset.sources, strict=strict, dedupe_events=dedupe_events,
                                chunk_size=chunk_size, progress=progress)

    result = _run(body)
    if as_json:
        typer.echo(json.dumps({**result.to_dict(), "run_id": logged[0] if logged else None,
                               "report": None if report is None else str(report)}, default=str))
        return
    from rich.markup import escape

    console = _console(stderr=False)
    console.print(f"Scored {result.scored_rows:,} of {result.input_rows:,} leads -> {result.output}",
                  highlight=False)
    for line in warned:
        console.print(f"[yellow]Warning:[/] {escape(line)}", highlight=False)
    if result.rejects is not None:
        console.print(f"[yellow]Rejected {result.rejected_rows:,} rows[/] -> {result.rejects} (with reasons)",
                      highlight=False)
    for line in result.warnings:
        console.print(f"[yellow]Warning:[/] {escape(line)}", highlight=False)
    drift = result.drift
    if drift and drift["n"]:
        auc = f"; expected ROC AUC {drift['expected_roc_auc']:.3f}" if drift["expected_roc_auc"] else ""
        console.print(f"Expected conversions: {drift['expected_conversions']:,.1f} of {drift['n']:,} "
                      f"({drift['expected_conversion_rate']:.1%}){auc} (check with `leadscore monitor` once the "
                      f"outcomes are in)", highlight=False)
        if drift["text"]:
            for line in drift["text"]:
                console.print(f"[yellow]Drift:[/] {escape(line)}", highlight=False)
        else:
            console.print("Drift: none (every feature and the score within PSI 0.1 of training)", highlight=False)
    if report is not None:
        console.print(f"Report -> {report}", highlight=False)
    if logged:
        console.print(f"Logged to the tracking store as run {logged[0]} (experiment lead-scoring)",
                      highlight=False)


@app.command()
def monitor(
    scored: Annotated[Path, typer.Option(help="A file `leadscore score` wrote (lead id, as_of, probability, band).")],
    outcomes: Annotated[Path, typer.Option(help="Outcomes: lead id and conversion time (empty = not converted).")],
    window_days: Annotated[int, typer.Option(help="Label window: converted within this many days after as_of.")]
    = 90,
    id_col: IdOpt = None,
    converted_at: Annotated[str, typer.Option(help="Conversion time column of the outcomes.")] = "converted_at",
    data_end: Annotated[str | None, typer.Option(help="Extract date of the outcomes (default: the latest "
                                                     "conversion they record).")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Expected against observed conversions of a scored batch, per band and overall: is the gap beyond noise?"""

    def body():
        from leadscore.features.io import read_table
        from leadscore.features.labels import outcome_times
        from leadscore.models.drift import monitor as run_monitor

        id_column = id_col or "lead_id"
        frame = read_table(scored, what="scored")
        from leadscore.features.io import require_columns

        require_columns(frame, [id_column, "as_of", "probability"], source=str(scored))
        converted = outcome_times(read_table(outcomes, what="outcomes"), id_column=id_column,
                                  converted_at=converted_at, source=str(outcomes))
        # The outcomes' extract time: given, else the latest conversion they record (else now).
        end = _timestamp(data_end, "--data-end")
        if end is None:
            import pandas as pd

            end = converted.max() if len(converted) else pd.Timestamp.now(tz="UTC")
        return run_monitor(frame, converted, window_days=window_days, data_end=end, id_column=id_column)

    result = _run(body)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    from rich.table import Table

    console = _console(stderr=False)
    table = Table(title="Expected vs observed conversions (closed label windows)")
    for col in ("group", "leads", "expected", "observed", "z", "beyond noise"):
        table.add_column(col, justify="left" if col == "group" else "right")
    for row in result["rows"]:
        table.add_row(row["group"], f"{row['leads']:,}", f"{row['expected']:,.1f}", f"{row['observed']:,}",
                      f"{row['z']:+.2f}", "yes" if row["beyond_noise"] else "no")
    console.print(table)
    if result["observed_roc_auc"] is not None:
        console.print(f"ROC AUC observed {result['observed_roc_auc']:.3f}, expected from the scores "
                      f"{result['expected_roc_auc']:.3f}", highlight=False)
    console.print(f"{result['verdict']}; {result['pending']:,} lead(s) still within their window", highlight=False)


@app.command()
def serve(
    model: Annotated[str, typer.Option(help="models:/lead-conversion@champion, runs:/<id>/model or a folder.")],
    host: Annotated[str, typer.Option(help="Address to listen on (0.0.0.0 for every interface).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    api_key_env: Annotated[str | None, typer.Option(help="Name of an environment variable holding the API key "
                                                         "every call but /health must send as X-API-Key.")] = None,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body accepted (MB).")] = 2.0,
    watch: Annotated[float, typer.Option(help="Seconds between checks of the model alias; a new version is "
                                              "loaded without a restart (0 = only on POST /reload).")] = 0.0,
    tracking_uri: TrackingOpt = None,
) -> None:
    """Serve the model over HTTP: POST /score, GET /model, GET /health, POST /reload; docs at /docs."""
    import os

    def body():
        from leadscore.models.registry import default_tracking_uri, require_existing_store

        uri = tracking_uri or default_tracking_uri()
        if ":/" in model:
            require_existing_store(uri)
        key = None
        if api_key_env:
            key = os.environ.get(api_key_env)
            if not key:
                from leadscore.features.errors import ConfigError

                raise ConfigError(f"--api-key-env {api_key_env}: the environment variable is not set or empty")
        from leadscore.serve.api import _load, create_app

        _load(model, uri)  # fail here, with one line, when the model cannot be loaded
        return create_app(model, tracking_uri=uri, api_key=key, max_body_bytes=int(max_body_mb * 1e6),
                          watch_seconds=watch)

    api = _run(body)
    import uvicorn

    _console().print(f"Serving {model} on http://{host}:{port} (docs: /docs)", highlight=False)
    uvicorn.run(api, host=host, port=port, log_level="warning", access_log=False)


@app.command()
def compare(
    model: Annotated[str, typer.Option(help="models:/lead-conversion@champion, runs:/<id>/model or a folder.")],
    rules: Annotated[Path | None, typer.Option(help="Rule file (YAML) marketing scores leads with.")] = None,
    rule_score_col: Annotated[str | None, typer.Option(help="Or: an existing rule-score column of the leads "
                                                            "export.")] = None,
    leads: LeadsOpt = None,
    outcomes: OutcomesOpt = None,
    events: EventsOpt = None,
    label: LabelOpt = None,
    config: ConfigOpt = None,
    window: Annotated[str, typer.Option(help="'test': the model's held-out test window; 'all': every labelled "
                                             "lead.")] = "test",
    capacity: Annotated[int | None, typer.Option("--capacity-per-week", help="Leads sales can work per week "
                                                                             "(default: 10% of the volume).")]
    = None,
    telemarketing: Annotated[int | None, typer.Option("--telemarketing-per-week", help="Leads telemarketing can "
                                                                                      "work per week (default: "
                                                                                      "20% of the volume).")]
    = None,
    report: Annotated[Path, typer.Option(help="Folder for report.html and the CSV tables.")] = Path("comparison"),
    log: Annotated[bool, typer.Option(help="Log the report to MLflow as a run.")] = True,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Learned score vs your manual rules on the same held-out leads: AUC, capacity curve, bands, scorecard."""
    from leadscore.pipeline import compare_with_rules

    def body():
        cfg = _train_config(config, label=label)
        return compare_with_rules(model, cfg, rules_path=rules, rule_score_column=rule_score_col, leads_path=leads,
                                  outcomes_path=outcomes, events_path=events, window=window,
                                  capacity_per_week=capacity, telemarketing_per_week=telemarketing,
                                  report_dir=report, tracking_uri=tracking_uri,
                                  log=log, step=_steps(as_json))

    result = _run(body)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    from rich.table import Table

    console = _console(stderr=False)
    m = result["metrics"]
    table = Table(title=f"Model vs rules on {result['n_leads']:,} leads ({result['n_conversions']:,} conversions)")
    for col in ("", "ROC AUC [95% CI]", "PR AUC [95% CI]"):
        table.add_column(col)

    def ci(values: dict, key: str) -> str:
        low, high = values[f"{key}_ci"]
        return f"{values[key]:.3f} [{low:.3f}, {high:.3f}]"

    table.add_row("model", ci(m["model"], "roc_auc"), ci(m["model"], "pr_auc"))
    table.add_row("rules", ci(m["rules"], "roc_auc"), ci(m["rules"], "pr_auc"))
    if result.get("scorecard"):
        sc = result["scorecard"]
        table.add_row("learned scorecard", f"{sc['roc_auc']:.3f} [{sc['roc_auc_ci'][0]:.3f}, "
                                           f"{sc['roc_auc_ci'][1]:.3f}]", "")
    console.print(table)
    console.print(f"[bold]{result['headline_text']}[/]", highlight=False)
    console.print(f"Report: {result['files']['html']}", highlight=False)


@app.command()
def promote(
    leads: LeadsOpt = None,
    outcomes: OutcomesOpt = None,
    events: EventsOpt = None,
    label: LabelOpt = None,
    config: ConfigOpt = None,
    auc_tolerance: Annotated[float, typer.Option(help="ROC AUC the challenger may lose against the champion.")]
    = 0.01,
    max_ece: Annotated[float, typer.Option(help="Highest calibration error (ECE) allowed for the challenger.")]
    = 0.05,
    dry_run: Annotated[bool, typer.Option(help="Decide and explain, but move no alias.")] = False,
    rollback_: Annotated[bool, typer.Option("--rollback", help="Move champion back to the previous champion.")]
    = False,
    tracking_uri: TrackingOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Promote the challenger to champion only if it is not worse on the same most-recent leads; says why."""
    from leadscore.pipeline import promote as promote_fn
    from leadscore.pipeline import rollback
    from leadscore.training.promotion import PromotionPolicy

    def body():
        cfg = _train_config(config, label=label)
        if rollback_:
            return rollback(cfg, tracking_uri=tracking_uri)
        return promote_fn(cfg, leads_path=leads, outcomes_path=outcomes, events_path=events,
                          policy=PromotionPolicy(auc_tolerance=auc_tolerance, max_ece=max_ece),
                          tracking_uri=tracking_uri, dry_run=dry_run, step=_steps(as_json))

    result = _run(body)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    console = _console(stderr=False)
    if rollback_:
        console.print(f"champion -> version {result['champion']} (previous champion: {result['previous_champion']})",
                      highlight=False)
        return
    verdict = "[bold green]promoted[/]" if result["promote"] else "[bold red]not promoted[/]"
    if result.get("dry_run"):
        verdict += " (dry run: no alias moved)"
    console.print(f"Challenger v{result['challenger']['version']}: {verdict}", highlight=False)
    for reason in result["reasons"]:
        console.print(f"  - {reason}", highlight=False)
    if result.get("window", {}).get("n_leads"):
        console.print(f"  evaluated on {result['window']['n_leads']:,} leads: {result['window']['kind']}",
                      highlight=False)


@app.command()
def funnel(
    leads: Annotated[Path, typer.Option(help="Lead table: id, created_at, lead_source.")],
    out_dir: Annotated[Path, typer.Option(help="Folder for report.html, the CSV tables and PNGs.")] = Path("funnel"),
    outcomes: OutcomesOpt = None,
    stages: Annotated[Path | None, typer.Option(help="Stage history: lead id, stage (MQL, SRL, SQL, opportunity, "
                                                     "won, lost), entered_at.")] = None,
    events: EventsOpt = None,
    pipeline: Annotated[Path | None, typer.Option(help="Per-lead team, landing_url, handed_over_at, first_touch_at, "
                                                       "deal_value.")] = None,
    scored: Annotated[Path | None, typer.Option(help="A scored lead list with band and label, for the reverse "
                                                     "funnel of the model's bands.")] = None,
    revenue_target: Annotated[float | None, typer.Option(help="Revenue to reach, for the reverse funnel.")] = None,
    deal_value: Annotated[float | None, typer.Option(help="Average deal value (default: measured).")] = None,
    as_of: Annotated[str | None, typer.Option(help="Date the funnel is seen at (default: end of the data).")] = None,
    window_days: Annotated[float | None, typer.Option(help="Count conversions within this many days of "
                                                           "creation.")] = None,
    sla_hours: Annotated[float, typer.Option(help="Agreed time from hand-over to first sales touch.")] = 24.0,
    id_col: IdOpt = None,
    date_col: DateOpt = None,
    channel: Annotated[str, typer.Option(help="Channel / lead source column.")] = "lead_source",
    as_json: JsonOpt = False,
) -> None:
    """Funnel analytics: conversion and time to convert by channel, 4V pipeline, reverse funnel, stalled, SLA."""
    from leadscore.presentation.funnel import run_funnel

    result = _run(run_funnel, leads, outcomes, stages, events, out_dir=out_dir, pipeline_path=pipeline,
                  scored_path=scored, revenue_target=revenue_target, average_deal_value=deal_value, as_of=as_of,
                  window_days=window_days, sla_hours=sla_hours, id_column=id_col or "lead_id",
                  created_column=date_col or "created_at", channel_column=channel)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    console = _console(stderr=False)
    for name, path in result["files"].items():
        if name in ("html", "report", "summary"):
            console.print(f"{name}: {path}", highlight=False)
    console.print(f"Report folder: {out_dir}", highlight=False)


@app.command("rules")
def rules_command(
    rules: Annotated[Path, typer.Option(help="Rule file (YAML).")],
    leads: Annotated[Path, typer.Option(help="Leads to score.")],
    out: Annotated[Path, typer.Option(help="Output file (.csv or .parquet).")],
    events: EventsOpt = None,
    as_of: Annotated[str | None, typer.Option(help="Score as of this time (default: the leads' as_of column, "
                                                   "else now).")] = None,
    previous: Annotated[Path | None, typer.Option(help="The previous run's output: leads that crossed into a "
                                                       "higher band are listed in <out>.alerts.")] = None,
    id_col: IdOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Score leads with marketing's point rules (same output shape as the model) and list band-crossing alerts."""
    from leadscore.features.io import read_table, write_table
    from leadscore.models.rules import RuleScorer, band_crossings, load_rules

    def body():
        ruleset = load_rules(rules)
        scorer = RuleScorer(ruleset, id_column=id_col or "lead_id", source=str(leads), events_source=str(events))
        scored = scorer.score(read_table(leads, what="leads"),
                              read_table(events, what="events") if events else None, as_of)
        write_table(scored, out)
        result = {"output": str(out), "leads": len(scored), "bands": scored["band"].value_counts().to_dict()}
        if previous is not None:
            moved = band_crossings(read_table(previous, what="previous scores"), scored, bands=ruleset.bands,
                                   id_column=id_col or "lead_id", only_up=True)
            alerts_path = out.with_name(f"{out.stem}.alerts{out.suffix}")
            write_table(moved, alerts_path)
            result.update(alerts=str(alerts_path), crossed_up=len(moved))
        return result

    result = _run(body)
    if as_json:
        typer.echo(json.dumps(result, default=str))
        return
    console = _console(stderr=False)
    console.print(f"Scored {result['leads']:,} leads -> {result['output']}; bands {result['bands']}", highlight=False)
    if "alerts" in result:
        console.print(f"[bold]{result['crossed_up']:,} leads moved up a band[/] -> {result['alerts']}",
                      highlight=False)


@app.command("init")
def init_command(
    directory: Annotated[Path, typer.Argument(help="Folder to copy the examples into (created if missing).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist there.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Copy the shipped example rule sets (rules/) and training configs (configs/) into DIR for editing."""
    from leadscore.examples import copy_examples

    written = _run(copy_examples, directory, overwrite=force)
    if as_json:
        typer.echo(json.dumps({"directory": str(directory), "files": [str(p) for p in written]}))
        return
    console = _console(stderr=False)
    for path in written:
        console.print(f"  {path}", highlight=False)
    console.print(f"Copied {len(written)} example files into {directory}; edit them and pass them on, e.g. "
                  f"--rules {directory / 'rules' / 'example.yaml'}", highlight=False)


def main() -> None:
    """Console entry point."""
    import os

    # The commands draw into files: unless the user chose a backend, never open a GUI one.
    os.environ.setdefault("MPLBACKEND", "Agg")
    if sys.getprofile() is not None or sys.gettrace() is not None:
        app()  # under a profiler or debugger, which report once the program returns: the usual exit
        return
    try:
        app()
    except SystemExit as exc:
        _exit(exc.code)
    _exit(0)


def _exit(code: object) -> None:
    """End the process as the interpreter does, less its teardown of every imported module.

    A command that imported MLflow, LightGBM, scikit-learn and matplotlib (some 5,000 modules) spends 1-2 s after
    its work is done freeing them one by one, for a process that is about to end. What of the interpreter's
    finalisation can matter runs, in its order: waiting for the other threads (and their exit hooks), the
    `atexit` functions (logging's flush, MLflow's, temporary folders' clean-up), flushing stdout and stderr.
    """
    import atexit
    import os
    import threading

    if code is None or isinstance(code, int):
        status = code or 0
    else:  # sys.exit("message"): the message goes to stderr and the status is 1, as Python does
        sys.stderr.write(f"{code}\n")
        status = 1
    shutdown = getattr(threading, "_shutdown", None)
    if shutdown is not None:
        shutdown()
    else:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    os._exit(status)
