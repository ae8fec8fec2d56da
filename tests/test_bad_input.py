"""Bad input, as a new user brings it: a table of cases against `leadscore score` and `leadscore train`.

Every case asserts the exit code; a failure is one line naming the file (and the column or row where it applies)
with no traceback; a success keeps every row (input rows = scored + rejected). The CLI runs in-process (typer's
runner) on a model bundle folder, so the whole table takes seconds.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from leadscore.cli import app
from leadscore.features.io import read_table

FORMULA = re.compile(r"^[=+\-@\t\r]")
NUMBER = re.compile(r"^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$")
AS_OF = "2025-10-01"  # after every fresh lead's creation


@pytest.fixture(scope="module")
def kit(trained, tmp_path_factory):
    """A model folder and a clean lead list with its events (written by the demo world)."""
    from leadscore.demo_world import generate_demo_world

    root = tmp_path_factory.mktemp("bad-input")
    trained.bundle.save(root / "model")
    world = generate_demo_world(n_leads=1_000, seed=3, n_fresh=300)
    leads = world.fresh_leads.drop(columns=["as_of"]).copy()
    return root / "model", leads, world.fresh_events.copy()


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"uncaught {type(result.exception).__name__}: {result.exception}")
    return result.exit_code, result.stdout, result.stderr


def csv_rows(path: Path) -> int:
    text = path.read_text(encoding="utf-8")
    return max(sum(1 for rec in csv.reader(io.StringIO(text, newline="")) if rec) - 1, 0)


def assert_one_line_error(code: int, out: str, err: str, *needles: str) -> None:
    assert code == 2, (out, err)
    assert "Traceback" not in err + out
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    # Besides the error, only the progress steps a training run prints ("> reading input files").
    assert len(errors) == 1 and all(ln.startswith("> ") for ln in lines if ln not in errors), err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])


def assert_nothing_lost(out_path: Path, n_input: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    scores = read_table(out_path)
    rej = out_path.with_name(f"{out_path.stem}.rejects{out_path.suffix}")
    rejects = read_table(rej) if rej.exists() else pd.DataFrame(columns=["input_row", "reject_reason"])
    assert len(scores) + len(rejects) == n_input
    return scores, rejects


def assert_no_formula_cells(*paths: Path) -> None:
    for path in paths:
        if not path.exists():
            continue
        for rec in csv.reader(io.StringIO(path.read_text(encoding="utf-8"), newline="")):
            for cell in rec:
                assert not (FORMULA.match(cell) and not NUMBER.match(cell)), (path.name, cell)


@dataclass
class Case:
    """One kind of bad input: how to make it from the clean files, and what must happen."""

    name: str
    make: object  # (tmp, leads, events) -> (leads_path, events_path or None, extra args)
    code: int = 0
    message: tuple[str, ...] = ()
    rejects: dict[str, int] = field(default_factory=dict)  # reason substring -> rows
    warns: tuple[str, ...] = ()
    check: object = None  # (out_path, stdout) -> None


def write(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    frame.to_csv(path, index=False, **kwargs)
    return path


def plain(tmp, leads, events):
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def formula_cells(tmp, leads, events):
    leads = leads.copy()
    bad = ["=1+1", '=HYPERLINK("http://x.test","click")', "+cmd|' /C calc'!A0", "@SUM(1+1)", "\tx", "\rx",
           "-2+3"]
    leads.loc[: len(bad) - 1, "company"] = bad
    leads.loc[len(bad), "lead_id"] = None  # one rejected row carries a formula into the rejects file too
    leads.loc[len(bad), "company"] = "=2+2"
    # Quoted, as a spreadsheet writes cells with line breaks (pandas leaves a lone CR unquoted).
    return (write(leads, tmp / "leads.csv", quoting=csv.QUOTE_NONNUMERIC), write(events, tmp / "events.csv"),
            ["--keep", "company"])


def check_formulas(out, stdout):
    scores = read_table(out)
    assert scores["company"].astype(str).str.startswith("'").sum() == 7
    assert_no_formula_cells(out, out.with_name(f"{out.stem}.rejects{out.suffix}"))


def unmatched_events(tmp, leads, events):
    events = events.assign(lead_id=events["lead_id"].str.lower().str.replace("n", "n0", n=1))
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def unmatched_strict(tmp, leads, events):
    lp, ep, args = unmatched_events(tmp, leads, events)
    return lp, ep, [*args, "--strict"]


def no_id_column(tmp, leads, events):
    return write(leads.drop(columns=["lead_id"]), tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def utf16(tmp, leads, events):
    return write(leads, tmp / "leads.csv", encoding="utf-16"), write(events, tmp / "events.csv"), []


def utf16_no_bom(tmp, leads, events):
    path = tmp / "leads.csv"
    path.write_bytes(leads.to_csv(index=False).encode("utf-16-le"))
    return path, write(events, tmp / "events.csv"), []


def unwritable_folder(tmp, leads, events):
    return (write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"),
            ["--out", "/proc/leadscore-test/out.csv"])


def rejects_not_writable(tmp, leads, events):
    (tmp / "out.rejects.csv").mkdir()
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def check_nothing_written(out, stdout):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.endswith(".tmp")]


def cut_last_row(tmp, leads, events):
    text = leads.to_csv(index=False)
    path = tmp / "leads.csv"
    path.write_text(text[: len(text) - 40])
    return path, write(events, tmp / "events.csv"), []


def cut_mid_file(tmp, leads, events):
    lines = leads.to_csv(index=False).splitlines()
    lines[10] = ",".join(lines[10].split(",")[:7])
    path = tmp / "leads.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, write(events, tmp / "events.csv"), []


def extra_fields(tmp, leads, events):
    lines = leads.to_csv(index=False).splitlines()
    lines[5] = lines[5] + ",surprise,more"
    path = tmp / "leads.csv"
    path.write_text("\n".join(lines) + "\n")
    return path, write(events, tmp / "events.csv"), []


def not_values(tmp, leads, events):
    leads = leads.copy()
    leads["employees"] = leads["employees"].astype(object)
    leads.loc[:4, "employees"] = ["inf", "-inf", "1e308", "-40", "1e400"]
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def check_reason_values(out, stdout):
    scores = read_table(out)
    values = pd.concat([scores[c] for c in scores.columns if c.endswith("_value")]).dropna().astype(str)
    numbers = values[values.str.fullmatch(r"[-+0-9.,e]+")]
    assert len(numbers) and numbers.str.len().max() <= 12
    reasons = pd.concat([scores[c] for c in scores.columns if re.fullmatch(r"reason_\d", c)]).dropna()
    assert not reasons.str.contains("inf|e\\+308|-40 ", regex=True).any()


def as_of_before_created(tmp, leads, events):
    leads = leads.assign(as_of=AS_OF)
    leads.loc[:2, "as_of"] = "2025-08-01"
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), ["--as-of", ""]


def as_of_future(tmp, leads, events):
    lp, ep, _ = plain(tmp, leads, events)
    return lp, ep, ["--as-of", "2099-01-01"]


def stale_tmp(tmp, leads, events):
    # What a SIGKILL during a write leaves: the writer's hidden temporary, with a pid no longer running.
    (tmp / ".out.csv.999999999-abcd.tmp").write_text("partial")
    (tmp / ".out.csv.q1w2e3.tmp").write_text("partial, an older naming")
    os.utime(tmp / ".out.csv.q1w2e3.tmp", (0, 0))
    return plain(tmp, leads, events)


def check_stale_removed(out, stdout):
    assert not list(out.parent.glob(".out.csv.*.tmp"))


def check_mode(out, stdout):
    assert (out.stat().st_mode & 0o777) == 0o644


def unseen_and_missing(tmp, leads, events):
    leads = leads.copy()
    leads.loc[:9, "industry"] = "space_mining"
    return (write(leads.drop(columns=["seniority"]), tmp / "leads.csv"), write(events, tmp / "events.csv"),
            ["--keep", "no_such_column"])


def duplicate_events(tmp, leads, events):
    events = pd.concat([events, events.head(500)], ignore_index=True)
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def duplicate_events_dropped(tmp, leads, events):
    lp, ep, args = duplicate_events(tmp, leads, events)
    return lp, ep, [*args, "--dedupe-events"]


def xlsx_renamed(tmp, leads, events):
    path = tmp / "book.xlsx"
    leads.assign(created_at=leads["created_at"].astype(str)).to_excel(path, index=False)
    renamed = tmp / "leads.csv"
    path.rename(renamed)
    return renamed, write(events, tmp / "events.csv"), []


def xlsx_read(tmp, leads, events):
    path = tmp / "leads.xlsx"
    leads.assign(created_at=leads["created_at"].astype(str)).to_excel(path, index=False)
    return path, write(events, tmp / "events.csv"), []


def mistyped_store(tmp, leads, events):
    lp, ep, _ = plain(tmp, leads, events)
    return lp, ep, ["--model", "models:/lead-conversion@champion", "--tracking-uri",
                    f"sqlite:///{tmp / 'mlflw.db'}"]


def check_no_store_created(out, stdout):
    assert not (out.parent / "mlflw.db").exists()


def ids_missing_dupe_empty(tmp, leads, events):
    leads = leads.copy()
    leads.loc[0, "lead_id"] = None
    leads.loc[1, "lead_id"] = "   "
    leads.loc[2, "lead_id"] = leads.loc[3, "lead_id"]
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def text_in_numbers(tmp, leads, events):
    leads = leads.copy()
    leads["employees"] = leads["employees"].astype(object)
    leads.loc[:2, "employees"] = ["unknown", "-", "approx. 50"]
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def semicolons_bom_crlf(tmp, leads, events):
    return (write(leads, tmp / "leads.csv", sep=";", encoding="utf-8-sig", lineterminator="\r\n"),
            write(events, tmp / "events.csv", sep="\t"), [])


def latin1(tmp, leads, events):
    leads = leads.copy()
    leads.loc[:5, "company"] = "Société Générale"
    return write(leads, tmp / "leads.csv", encoding="latin-1"), write(events, tmp / "events.csv"), []


def empty_file(tmp, leads, events):
    (tmp / "leads.csv").write_text("")
    return tmp / "leads.csv", None, []


def header_only(tmp, leads, events):
    (tmp / "leads.csv").write_text(",".join(leads.columns) + "\n")
    return tmp / "leads.csv", None, []


def unknown_and_future_events(tmp, leads, events):
    extra = events.head(50).assign(event_type="carrier_pigeon")
    future = events.head(50).assign(timestamp=pd.Timestamp("2030-01-01", tz="UTC")
                                    + pd.to_timedelta(np.arange(50), unit="h"))
    return (write(leads, tmp / "leads.csv"), write(pd.concat([events, extra, future]), tmp / "events.csv"),
            ["--as-of", AS_OF])


def bad_event_timestamps(tmp, leads, events):
    events = events.astype({"timestamp": object})
    events.loc[:2, "timestamp"] = "yesterday-ish"
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def bad_created(tmp, leads, events):
    leads = leads.astype({"created_at": object})
    leads.loc[:3, "created_at"] = "soon"
    return write(leads, tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def all_missing_column(tmp, leads, events):
    return write(leads.assign(country=None), tmp / "leads.csv"), write(events, tmp / "events.csv"), []


def wrong_file(tmp, leads, events):
    return write(events, tmp / "leads.csv"), None, []


SCORE_CASES = [
    Case("clean", plain),
    Case("formula cells", formula_cells, rejects={"missing lead id": 1}, check=check_formulas),
    Case("events match no lead", unmatched_events, warns=("none of the", "event rows matches a lead id")),
    Case("events match no lead, --strict", unmatched_strict, code=2,
         message=("leads.csv", "--strict", "matches a lead id", "nothing written"), check=check_nothing_written),
    Case("no id column, with events", no_id_column, code=2, message=("leads.csv", "missing required id column",
                                                                      "'lead_id'")),
    Case("UTF-16 with BOM", utf16),
    Case("UTF-16 without BOM", utf16_no_bom),
    Case("output folder not writable", unwritable_folder, code=2, message=("out.csv", "cannot write")),
    Case("rejects file cannot be written", rejects_not_writable, code=2, message=("out.rejects.csv", "folder"),
         check=check_nothing_written),
    Case("last row cut mid-line", cut_last_row, rejects={"fields": 1}),
    Case("row cut short mid-file", cut_mid_file, rejects={"row has 7 of 11 fields": 1}),
    Case("row with extra fields", extra_fields, rejects={"row has 13 of 11 fields": 1}),
    Case("inf, -inf, 1e308, negative head-count", not_values, warns=("'employees': 5 value(s) infinite",),
         check=check_reason_values),
    Case("as_of before creation", as_of_before_created, rejects={"is before the lead's creation": 3}),
    Case("as_of far in the future", as_of_future, warns=("in the future",)),
    Case("stale temporaries of a killed write", stale_tmp, check=check_stale_removed),
    Case("file mode follows the umask", plain, check=check_mode),
    Case("unseen categories, missing column, --keep of no column", unseen_and_missing,
         warns=("'industry': 10 lead(s) with a value not seen", "'seniority'", "not in the file",
                "--keep 'no_such_column'")),
    Case("duplicate event rows", duplicate_events, warns=("500 duplicate event row(s)", "--dedupe-events")),
    Case("duplicate event rows, --dedupe-events", duplicate_events_dropped, warns=("dropped",)),
    Case("an .xlsx renamed .csv", xlsx_renamed, code=2, message=("leads.csv", "Excel workbook")),
    Case("an .xlsx", xlsx_read),
    Case("mistyped sqlite store", mistyped_store, code=2, message=("mlflw.db", "no tracking store"),
         check=check_no_store_created),
    Case("missing, blank and duplicate ids", ids_missing_dupe_empty,
         rejects={"missing lead id": 2, "duplicate lead id": 1}),
    Case("text in a number column", text_in_numbers, warns=("'employees': 3 value(s) are not numbers",)),
    Case("semicolons, BOM, CRLF; tab-separated events", semicolons_bom_crlf),
    Case("Latin-1", latin1),
    Case("empty file", empty_file, code=2, message=("leads.csv", "empty")),
    Case("header only", header_only, code=2, message=("leads.csv", "header but no rows")),
    Case("unknown and future events", unknown_and_future_events),
    Case("unparseable event timestamps", bad_event_timestamps, code=2,
         message=("events.csv", "'timestamp'", "yesterday-ish", "row")),
    Case("unparseable creation dates", bad_created, rejects={"not a date/time": 4}),
    Case("an all-missing column", all_missing_column),
    Case("the events file given as leads", wrong_file, code=2, message=("leads.csv",)),
]


@pytest.mark.parametrize("case", SCORE_CASES, ids=[c.name for c in SCORE_CASES])
def test_score_bad_input(case, kit, tmp_path):
    model, leads, events = kit
    leads_path, events_path, extra = case.make(tmp_path, leads.copy(), events.copy())
    out = tmp_path / "out.csv"
    args = ["score", "--model", model, "--leads", leads_path, "--out", out]
    if events_path is not None:
        args += ["--events", events_path]
    if "--as-of" not in extra:
        args += ["--as-of", AS_OF]
    args += extra
    for flag in ("--model", "--out", "--as-of"):  # a case's own value replaces the default one
        if args.count(flag) > 1:
            i = args.index(flag)
            del args[i:i + 2]
    if "" in args:  # "--as-of ''": use the file's as_of column
        i = args.index("")
        del args[i - 1:i + 1]
    old = os.umask(0o022)
    try:
        code, stdout, stderr = run(*args)
    finally:
        os.umask(old)
    out_path = Path(args[args.index("--out") + 1])
    if case.code:
        assert_one_line_error(code, stdout, stderr, *case.message)
    else:
        assert code == 0, stderr
        assert "Traceback" not in stdout + stderr
        n_input = len(leads) if leads_path.suffix == ".xlsx" else None
        if n_input is None:
            n_input = len(read_table(leads_path)) if not case.rejects.get("fields") else len(leads)
        scores, rejects = assert_nothing_lost(out_path, n_input)
        for needle, count in case.rejects.items():
            assert int(rejects["reject_reason"].str.contains(needle, regex=False).sum()) == count, \
                rejects["reject_reason"].tolist()
        if not case.rejects:
            assert len(rejects) == 0, rejects["reject_reason"].tolist()
        for needle in case.warns:
            assert needle in stdout, stdout
        if not case.warns:
            assert "Warning" not in stdout, stdout
        assert_no_formula_cells(out_path, out_path.with_name(f"{out_path.stem}.rejects.csv"))
    if case.check is not None:
        case.check(out_path, stdout)


def test_dedupe_gives_the_scores_of_the_clean_events(kit, tmp_path):
    model, leads, events = kit
    lp, ep, _ = plain(tmp_path, leads, events)
    dup = write(pd.concat([events, events.head(500)], ignore_index=True), tmp_path / "dup.csv")
    base = ["score", "--model", model, "--leads", lp, "--as-of", AS_OF, "--no-reasons"]
    assert run(*base, "--events", ep, "--out", tmp_path / "a.csv")[0] == 0
    assert run(*base, "--events", dup, "--out", tmp_path / "b.csv")[0] == 0
    assert run(*base, "--events", dup, "--dedupe-events", "--out", tmp_path / "c.csv")[0] == 0
    a, b, c = (read_table(tmp_path / f"{x}.csv") for x in "abc")
    assert a["probability"].tolist() == c["probability"].tolist()
    assert a["probability"].tolist() != b["probability"].tolist()


def test_unmatched_events_in_json_and_plain_output_agree(kit, tmp_path):
    model, leads, events = kit
    lp, ep, _ = unmatched_events(tmp_path, leads, events)
    import json

    code, stdout, _ = run("score", "--model", model, "--leads", lp, "--events", ep, "--out", tmp_path / "o.csv",
                          "--as-of", AS_OF, "--json")
    assert code == 0
    summary = json.loads(stdout)
    assert summary["stats"]["leads_matched_by_events"] == 0
    assert any("matches a lead id" in w for w in summary["warnings"])


# --- training ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def train_kit():
    from leadscore.demo_world import generate_demo_world

    world = generate_demo_world(n_leads=1_200, seed=5, n_fresh=10)
    return world.leads.copy(), world.outcomes.copy(), world.events.copy()


def t_plain(tmp, leads, outcomes, events):
    return {"leads": write(leads, tmp / "leads.csv"), "outcomes": write(outcomes, tmp / "outcomes.csv")}


def t_no_conversion(tmp, leads, outcomes, events):
    return {"leads": write(leads, tmp / "leads.csv"),
            "outcomes": write(outcomes.assign(converted_at=None), tmp / "outcomes.csv")}


def t_early_conversion(tmp, leads, outcomes, events):
    outcomes = outcomes.copy()
    created = leads.set_index("lead_id")["created_at"]
    first = outcomes.index[:300]
    outcomes.loc[first, "converted_at"] = outcomes.loc[first, "lead_id"].map(created) - pd.Timedelta(days=3)
    return {"leads": write(leads, tmp / "leads.csv"), "outcomes": write(outcomes, tmp / "outcomes.csv")}


def t_three_valued(tmp, leads, outcomes, events):
    rng = np.random.default_rng(0)
    frame = leads.assign(stage=rng.choice(["Won", "Lost", "Negotiation"], size=len(leads)))
    return {"leads": write(frame, tmp / "leads.csv"), "args": ["--label", "stage"]}


def t_one_class(tmp, leads, outcomes, events):
    return {"leads": write(leads.assign(won="no"), tmp / "leads.csv"), "args": ["--label", "won"]}


def t_tiny(tmp, leads, outcomes, events):
    small = leads.head(12)
    return {"leads": write(small, tmp / "leads.csv"), "outcomes": write(outcomes, tmp / "outcomes.csv")}


def t_duplicate_ids(tmp, leads, outcomes, events):
    leads = leads.copy()
    leads.loc[7, "lead_id"] = leads.loc[3, "lead_id"]
    return {"leads": write(leads, tmp / "leads.csv"), "outcomes": write(outcomes, tmp / "outcomes.csv")}


def t_short_row(tmp, leads, outcomes, events):
    lines = leads.to_csv(index=False).splitlines()
    lines[20] = ",".join(lines[20].split(",")[:5])
    (tmp / "leads.csv").write_text("\n".join(lines) + "\n")
    return {"leads": tmp / "leads.csv", "outcomes": write(outcomes, tmp / "outcomes.csv")}


def t_leaking_copy(tmp, leads, outcomes, events):
    conv = leads["lead_id"].map(outcomes.set_index("lead_id")["converted_at"])
    return {"leads": write(leads.assign(deal_closed=conv.notna().map({True: "yes", False: "no"})),
                           tmp / "leads.csv"),
            "outcomes": write(outcomes, tmp / "outcomes.csv")}


@dataclass
class TrainCase:
    name: str
    make: object
    message: tuple[str, ...]
    code: int = 2


TRAIN_CASES = [
    TrainCase("outcomes without any conversion", t_no_conversion, ("single class", "not converted")),
    TrainCase("conversions before creation", t_early_conversion,
              ("leads.csv", "300 lead(s) converted before they were created", "'converted_at'", "rows",
               "--exclude-early-conversions")),
    TrainCase("three-valued label", t_three_valued, ("leads.csv", "'stage'", "--positive")),
    TrainCase("one class", t_one_class, ("leads.csv", "'won'", "single value")),
    TrainCase("tiny data", t_tiny, ("leads.csv",)),
    TrainCase("duplicate ids", t_duplicate_ids, ("leads.csv", "duplicate lead id", "row 8")),
    TrainCase("row cut short", t_short_row, ("leads.csv", "row has 5 of 11 fields", "row 20")),
    TrainCase("leaking copy of the outcome", t_leaking_copy, ("deal_closed", "leak_auc"), code=1),
]


@pytest.mark.parametrize("case", TRAIN_CASES, ids=[c.name for c in TRAIN_CASES])
def test_train_bad_input(case, train_kit, tmp_path):
    leads, outcomes, events = train_kit
    made = case.make(tmp_path, leads.copy(), outcomes.copy(), events.copy())
    args = ["check-data" if case.code == 1 else "train", "--leads", made["leads"]]
    if "outcomes" in made:
        args += ["--outcomes", made["outcomes"]]
    if case.code != 1:
        args += ["--workdir", tmp_path / "work"]
    args += made.get("args", [])
    code, stdout, stderr = run(*args)
    if case.code == 1:  # check-data: the leak is a fatal finding, named in the report
        assert code == 1, stderr
        assert all(n in stdout + stderr for n in case.message), stdout + stderr
        assert "Traceback" not in stdout + stderr
        return
    assert_one_line_error(code, stdout, stderr, *case.message)


def test_train_excludes_early_conversions_when_asked(train_kit, tmp_path):
    leads, outcomes, events = train_kit
    made = t_early_conversion(tmp_path, leads.copy(), outcomes.copy(), events.copy())
    code, stdout, stderr = run("check-data", "--leads", made["leads"], "--outcomes", made["outcomes"],
                               "--exclude-early-conversions", "--json")
    assert code in (0, 1), stderr
    import json

    assert json.loads(stdout)["summary"]["converted_before_created"] == 300


def test_sigkill_while_writing_leaves_no_target_and_the_next_run_cleans_up(kit, tmp_path):
    """A real `kill -9` in the middle of writing the output: no partial target, and the temporary goes away."""
    import signal
    import subprocess
    import sys
    import time

    model, leads, events = kit
    big = pd.concat([leads.assign(lead_id=leads["lead_id"] + f"-{i}") for i in range(60)], ignore_index=True)
    lp = write(big, tmp_path / "leads.csv")
    out = tmp_path / "out.csv"
    cmd = [sys.executable, "-m", "leadscore", "score", "--model", str(model), "--leads", str(lp), "--out", str(out),
           "--as-of", AS_OF]
    for _attempt in range(5):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        caught = False
        while proc.poll() is None:
            if list(tmp_path.glob(".out.csv.*.tmp")):
                proc.send_signal(signal.SIGKILL)
                caught = True
                break
            time.sleep(0.002)
        proc.wait()
        if caught:
            break
        out.unlink(missing_ok=True)
    assert caught, "the write was never caught in progress"
    assert not out.exists()
    assert list(tmp_path.glob(".out.csv.*.tmp"))  # what the killed writer left
    code, stdout, stderr = run("score", "--model", model, "--leads", lp, "--out", out, "--as-of", AS_OF)
    assert code == 0, stderr
    assert not list(tmp_path.glob(".out.csv.*.tmp")) and len(read_table(out)) == len(big)


def test_score_shows_progress_in_plain_lines_when_not_on_a_terminal(kit, tmp_path):
    model, leads, events = kit
    lp, ep, _ = plain(tmp_path, leads, events)
    code, stdout, stderr = run("score", "--model", model, "--leads", lp, "--events", ep, "--out", tmp_path / "o.csv",
                               "--as-of", AS_OF, "--chunk-size", "100")
    assert code == 0, stderr
    lines = [ln for ln in stderr.splitlines() if ln.startswith("> scoring leads:")]
    assert lines and lines[-1].startswith(f"> scoring leads: {len(leads):,} of {len(leads):,} (")
    assert "rows/s" in lines[-1] and "ETA" in lines[-1]
    code, stdout, stderr = run("score", "--model", model, "--leads", lp, "--events", ep, "--out", tmp_path / "j.csv",
                               "--as-of", AS_OF, "--json")
    assert code == 0 and "scoring leads" not in stderr  # --json keeps stderr quiet


@pytest.mark.slow
def test_small_chunks_give_the_output_and_rejects_of_one_chunk(kit, tmp_path):
    """Duplicates across chunk boundaries, malformed rows and bad values land as with the list in one piece."""
    model, leads, events = kit
    bad = leads.head(260).copy()
    bad = pd.concat([bad, bad.iloc[[3, 120]]], ignore_index=True)  # duplicates of rows in earlier chunks
    bad["employees"] = bad["employees"].astype(object)
    bad.loc[50, "employees"] = "lots"
    bad.loc[77, "lead_id"] = None
    lp = write(bad, tmp_path / "leads.csv")
    lines = lp.read_text().splitlines()
    lines[140] = lines[140] + ",surplus"
    lp.write_text("\n".join(lines) + "\n")
    ep = write(events, tmp_path / "events.csv")
    base = ["score", "--model", model, "--leads", lp, "--events", ep, "--as-of", AS_OF, "--json"]
    code, out, err = run(*base, "--out", tmp_path / "one.csv")
    assert code == 0, err
    code, out_small, err = run(*base, "--out", tmp_path / "small.csv", "--chunk-size", "37")
    assert code == 0, err
    one, small = json.loads(out), json.loads(out_small)
    assert (small["scored_rows"], small["rejected_rows"]) == (one["scored_rows"], one["rejected_rows"])
    assert small["input_rows"] == small["scored_rows"] + small["rejected_rows"] == len(bad)
    pd.testing.assert_frame_equal(read_table(tmp_path / "small.csv"), read_table(tmp_path / "one.csv"))
    pd.testing.assert_frame_equal(read_table(tmp_path / "small.rejects.csv"), read_table(tmp_path / "one.rejects.csv"))
    reasons = read_table(tmp_path / "small.rejects.csv")["reject_reason"].tolist()
    assert reasons.count("column 'lead_id': duplicate lead id") == 2 and any("fields" in r for r in reasons)


def test_reason_modes_and_reasons_for_the_top_k_only(kit, tmp_path):
    """`--reasons all` adds every feature's contribution (adding up to probability - base rate) beside the top
    reasons; `--explain-top K` gives exactly the top-K leads (ties in input order) the reasons `top` gives them,
    across chunks, and leaves the other rows' reason columns empty."""
    model, leads, events = kit
    lp, ep, _ = plain(tmp_path, leads, events)
    outs = {}
    for name, extra in (("top", []), ("all", ["--reasons", "all"]), ("k", ["--explain-top", "40"]),
                        ("none", ["--no-reasons"])):
        outs[name] = tmp_path / f"{name}.csv"
        code, _, stderr = run("score", "--model", model, "--leads", lp, "--events", ep, "--out", outs[name],
                              "--as-of", AS_OF, "--chunk-size", "37", *extra)
        assert code == 0, stderr
    top, every, k, none = (pd.read_csv(outs[n]) for n in ("top", "all", "k", "none"))
    contrib = [c for c in every.columns if c.startswith("contribution_")]
    assert len(contrib) > 10
    np.testing.assert_allclose(every[contrib].sum(axis=1), every["probability"] - every["base_rate"], atol=1e-9)
    pd.testing.assert_frame_equal(every[list(top.columns)], top)
    assert list(k.columns) == list(top.columns) and list(none.columns) == list(top.columns[:5])
    ranked = top.assign(row=np.arange(len(top))).sort_values(["probability", "row"], ascending=[False, True])
    chosen = np.zeros(len(top), dtype=bool)
    chosen[ranked.index[:40]] = True
    assert (k["reason_1"].notna().to_numpy() == chosen).all()
    pd.testing.assert_frame_equal(k[chosen], top[chosen])
    pd.testing.assert_frame_equal(k.loc[~chosen, list(none.columns)], top.loc[~chosen, list(none.columns)])
