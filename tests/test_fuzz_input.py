"""A property test: a valid lead file corrupted at random (rows cut, cells swapped, bytes injected, odd encodings)
either scores with every row in the output or the rejects, or fails with one line naming the file. Never a
traceback, never a lost row."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from leadscore.cli import app

AS_OF = "2025-10-01"
INJECT = [b",", b";", b'"', b"\n", b"\r", b"\r\n", b"\x00", b"\xff\xfe", b"=1+1", b"\t", b"inf", b"1e400", b"-",
          b"\xc3", b"\xe9", b"NA", b",,,,", b'"a\nb"']


@pytest.fixture(scope="module")
def kit(trained, tmp_path_factory):
    from leadscore.demo_world import generate_demo_world

    root = tmp_path_factory.mktemp("fuzz")
    trained.bundle.save(root / "model")
    world = generate_demo_world(n_leads=500, seed=11, n_fresh=60)
    leads = world.fresh_leads.drop(columns=["as_of"])
    return root, root / "model", leads.to_csv(index=False).encode("utf-8")


@st.composite
def corruptions(draw, size: int):
    ops = draw(st.lists(st.sampled_from(["cut", "inject", "swap", "drop_line", "dup_line"]), min_size=1, max_size=4))
    plan = []
    for op in ops:
        if op == "inject":
            plan.append((op, draw(st.integers(0, size)), draw(st.sampled_from(INJECT))))
        else:
            plan.append((op, draw(st.integers(0, size)), draw(st.integers(0, 60))))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    return plan, encoding


def corrupt(raw: bytes, plan, encoding: str) -> bytes:
    data = raw
    for op, pos, arg in plan:
        pos = min(pos, len(data))
        if op == "cut":
            data = data[:max(pos, 1)]
        elif op == "inject":
            data = data[:pos] + arg + data[pos:]
        else:
            lines = data.split(b"\n")
            i = 1 + arg % max(len(lines) - 1, 1)
            if i >= len(lines):
                continue
            if op == "swap":
                cells = lines[i].split(b",")
                if len(cells) > 3:
                    cells[1], cells[3] = cells[3], cells[1]
                lines[i] = b",".join(cells)
            elif op == "drop_line":
                del lines[i]
            else:
                lines.insert(i, lines[i])
            data = b"\n".join(lines)
    if encoding not in ("utf-8", "utf-8-sig"):
        try:
            data = data.decode("utf-8").encode(encoding)
        except (UnicodeDecodeError, UnicodeEncodeError):
            pass
    elif encoding == "utf-8-sig":
        data = b"\xef\xbb\xbf" + data
    return data


# FUZZ_EXAMPLES=1000 runs a longer, random search; by default the same 60 examples every run.
@pytest.mark.slow  # 60 corrupted files, each scored: 40 s
@settings(max_examples=int(os.environ.get("FUZZ_EXAMPLES", "60")), deadline=None,
          derandomize=os.environ.get("FUZZ_EXAMPLES") is None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_corrupted_lead_files_lose_no_row_and_never_crash(kit, data):
    root, model, raw = kit
    plan, encoding = data.draw(corruptions(len(raw)))
    path = root / "leads.csv"
    path.write_bytes(corrupt(raw, plan, encoding))
    out = root / "out.csv"
    rej = root / "out.rejects.csv"
    for stale in (out, rej):
        stale.unlink(missing_ok=True)
    result = CliRunner().invoke(app, ["score", "--model", str(model), "--leads", str(path), "--out", str(out),
                                      "--as-of", AS_OF])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    text = result.stdout + result.stderr
    assert "Traceback" not in text
    if result.exit_code == 2:
        errors = [ln for ln in result.stderr.splitlines() if ln.strip() and not ln.startswith("> ")]
        assert len(errors) == 1 and errors[0].startswith("error: ") and str(path) in errors[0], result.stderr
        assert not out.exists()
        return
    assert result.exit_code == 0, text
    n_in = _records(path)
    scored = _records(out)
    rejected = _records(rej) if rej.exists() else 0
    assert scored + rejected == n_in, (plan, encoding, scored, rejected, n_in)


def _records(path: Path) -> int:
    """Data rows of the file as the standard library's CSV reader counts them (blank lines are no rows)."""
    from leadscore.features.io import _decode, sniff_delimiter

    text = _decode(path.read_bytes(), path)
    delimiter = sniff_delimiter(text[:65536])
    records = [rec for rec in csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
               if rec and not (len(rec) == 1 and not rec[0].strip())]
    return len(records) - 1
