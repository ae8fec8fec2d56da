"""Tabular I/O: delimiters, encodings, one-line errors that name the file, column and rows; atomic writes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from leadscore.features.errors import DataError
from leadscore.features.io import parse_numbers, parse_timestamps, read_table, require_columns, write_table
from leadscore.features.labels import map_label


def test_reads_semicolon_csv_with_bom(tmp_path):
    path = tmp_path / "leads.csv"
    path.write_bytes("\ufefflead_id;employees;country\n007;1.200;DE\n008;15;FR\n".encode())
    frame = read_table(path)
    assert list(frame.columns) == ["lead_id", "employees", "country"]
    assert frame["lead_id"].tolist() == ["007", "008"]  # ids keep their leading zeros


def test_reads_latin1_and_tab_separated(tmp_path):
    path = tmp_path / "leads.tsv"
    path.write_bytes("lead_id\tcity\n1\tK\xf6ln\n2\tM\xfcnchen\n".encode("latin-1"))
    assert read_table(path)["city"].tolist() == ["Köln", "München"]


@pytest.mark.parametrize("body, from_bytes", [
    (b"lead_id,ts,type\nL1,2024-01-01,visit\nL2,,email_click\r\n\nL3,2024-01-03, pricing\n", False),  # CRLF, a blank
    (b'"lead_id","ts","type"\nL1,2024-01-01,visit\nL2,,email_click\nL3,2024-01-03,pricing\n', True),  # quoted header
    (b'"lead_id","ts","type"\nL1,2024-01-01,"vis,it"\nL2,,email_click\nL3,2024-01-03,pricing\n', False),  # quoted
    ("\ufefflead_id;ts;type\nL1;2024-01-01;visit\nL2;;email_click\nL3;2024-01-03;pricing\n".encode(), True),  # BOM
    (b"lead_id,ts,type\nL1,2024-01-01,visit\nL2,,email_click,extra\nL3,2024-01-03,pricing\n", False),  # long row
    ("lead_id,ts,type\nL1,2024-01-01,K\xf6ln\nL2,,email_click\nL3,2024-01-03,pricing\n".encode("latin-1"), False),
])
def test_the_fast_bytes_reader_reads_what_the_text_reader_reads(tmp_path, body, from_bytes, monkeypatch):
    """Plain UTF-8 files (a quoted header included, as Arrow's writer puts it) are parsed from the bytes; every
    file reads the same as through pandas' reader of the decoded text, malformed-row notes included."""
    from leadscore.features import io as tabular

    path = tmp_path / "events.csv"
    path.write_bytes(body)
    fast = read_table(path)
    assert (tabular._utf8_plain_csv(body, path) is not None) == from_bytes  # parsed from the bytes, or not
    monkeypatch.setattr(tabular, "_plain_csv", lambda *args: None)  # the decoding reader alone, as reference
    text = tabular._read_csv(tabular._decode(body, path), path, "table")
    MALFORMED = tabular.MALFORMED
    pd.testing.assert_frame_equal(fast, text)
    assert fast.attrs.get(MALFORMED) == text.attrs.get(MALFORMED)
    assert list(fast.columns) == ["lead_id", "ts", "type"] and len(fast) == 3
    assert fast["ts"].isna().tolist() == [False, True, False]


def test_parquet_round_trip_is_atomic(tmp_path):
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    out = write_table(frame, tmp_path / "t.parquet")
    assert read_table(out)["a"].tolist() == [1, 2]
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]  # no temp file left behind


@pytest.mark.parametrize("content, message", [
    (b"", "file is empty"),
    (b"   \n", "file is empty"),
    (b"lead_id,created_at\n", "header but no rows"),
])
def test_empty_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "leads.csv"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message) as info:
        read_table(path, what="leads")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_missing_file_and_unknown_type(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_table(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="unsupported file type '.json'"):
        read_table(tmp_path / "leads.json")


def test_missing_required_column_names_file_and_column():
    frame = pd.DataFrame({"id": [1]})
    with pytest.raises(DataError, match=r"leads.csv: missing required column 'lead_id' \(columns present: id\)"):
        require_columns(frame, ["lead_id"], source="leads.csv")


def test_unparseable_dates_name_column_value_and_rows():
    values = pd.Series(["2025-01-02", "yesterday", "2025-13-45", None, "2025-02-03T10:00:00+01:00"])
    with pytest.raises(DataError) as info:
        parse_timestamps(values, source="leads.csv", column="created_at")
    text = str(info.value)
    assert text.startswith("leads.csv: column 'created_at': cannot parse 'yesterday'")
    assert "rows 2, 3" in text


def test_timestamps_are_utc():
    parsed = parse_timestamps(pd.Series(["2025-02-03T10:00:00+01:00", "2025-02-03 09:00"]), source="s", column="c")
    assert str(parsed.dt.tz) == "UTC"
    assert parsed.iloc[0] == parsed.iloc[1]


@pytest.mark.parametrize("values, message", [
    (["0", "1", "2"], r"cannot tell which label value means converted \(it has more than two values; values: "
                      r"'0' \(1\), '1' \(1\), '2' \(1\)\); name it with --positive VALUE"),
    (["yes", "no", "maybe"], r"more than two values.*'maybe' \(1\).*--open VALUE"),
    (["1", "1", "1"], "single value"),
    (["0", None, "1"], r"missing label \(row 2\)"),
    (["Hot", "Cold", "Hot"], r"no value is a known positive"),
])
def test_bad_labels(values, message):
    with pytest.raises(DataError, match=message):
        map_label(pd.Series(values), source="leads.csv", column="converted")


def test_labels_accept_words():
    mapped, _ = map_label(pd.Series(["Yes", "no", "TRUE", "0"]), source="s", column="c")
    assert mapped.tolist() == [1, 0, 1, 0]


def test_won_lost_is_recognised_and_described_with_counts():
    values = pd.Series(["Won"] * 3 + ["Lost"] * 2 + [" closed  won "])
    mapped, mapping = map_label(values, source="deals.csv", column="deal_stage")
    assert mapped.tolist() == [1, 1, 1, 0, 0, 1]
    assert mapping.describe() == ("label deal_stage: 'Won' = converted (3), 'closed  won' = converted (1), "
                                  "'Lost' = not converted (2)")


def test_three_values_with_positive_and_open():
    values = pd.Series(["Won", "Lost", "Open", "Won", "Lost", "Open", "Stalled"])
    mapped, mapping = map_label(values, source="s", column="stage", positive=("won",), open_values=("Open",))
    assert mapped.isna().tolist() == [False, False, True, False, False, True, False]
    assert mapped.dropna().tolist() == [1, 0, 1, 0, 0]
    assert mapping.open == ("Open",) and set(mapping.negative) == {"Lost", "Stalled"}
    with pytest.raises(DataError, match=r"--positive 'Closed' is not a value of the label"):
        map_label(values, source="s", column="stage", positive=("Closed",))


def test_numeric_zero_one_labels_from_parquet_types():
    mapped, mapping = map_label(pd.Series([0.0, 1.0, 1.0]), source="s", column="c")
    assert mapped.tolist() == [0, 1, 1] and mapping.positive == ("1",)


def test_numbers_flag_bad_cells_and_read_booleans():
    numbers, bad = parse_numbers(pd.Series(["1", "2.5", "abc", None, "true"]), source="s", column="c")
    assert numbers.iloc[[0, 1, 4]].tolist() == [1.0, 2.5, 1.0]
    assert bad.tolist() == [False, False, True, False, False]


def test_reading_in_blocks_gives_the_whole_file_reading(tmp_path):
    """Record boundaries outside quotes, CRLF, a BOM, quoted line breaks and a malformed row split across blocks."""
    from leadscore.features.io import MALFORMED, iter_table

    rows = []
    for i in range(3000):
        note = f'"line one\r\nline two, with ""quotes"" {i}"' if i % 13 == 0 else f"plain {i}"
        rows.append(f"L{i:05d},{note},{i * 1.5}")
    rows.insert(1234, "L_bad,too,many,fields")
    rows.insert(2222, "L_short")
    text = "\ufeffid,note,value\r\n" + "\r\n".join(rows) + "\r\n"
    path = tmp_path / "notes.csv"
    path.write_bytes(text.encode("utf-8"))
    whole = read_table(path)
    for size in (500, 37):  # chunks of more rows than a 4 KB block holds, and of fewer
        chunks = list(iter_table(path, rows=size, block_bytes=4096))
        assert [len(c.frame) for c in chunks[:-1]] == [size] * (len(chunks) - 1) and chunks[-1].fraction == 1.0
        joined = pd.concat([c.frame for c in chunks], ignore_index=True)
        pd.testing.assert_frame_equal(joined, whole)
        notes = {c.first_row + k: v for c in chunks for k, v in c.frame.attrs.get(MALFORMED, {}).items()}
        assert notes == whole.attrs[MALFORMED] and len(notes) == 2
        assert [c.first_row for c in chunks] == list(np.cumsum([0] + [len(c.frame) for c in chunks[:-1]]))


def test_staged_writer_appends_chunks_and_commits_once(tmp_path):
    from leadscore.features.io import StagedWriter, commit

    for name in ("out.csv", "out.parquet"):
        writer = StagedWriter(tmp_path / name)
        writer.write(pd.DataFrame({"a": ["=1+1", None], "b": [1.0, 2.0]}))
        writer.write(pd.DataFrame({"a": [None, None], "b": [3.0, 4.0]}))  # an all-empty text column fits
        assert not (tmp_path / name).exists()
        commit([writer.close()])
        back = read_table(tmp_path / name)
        assert len(back) == 4 and back["a"].iloc[0] == "'=1+1" if name.endswith("csv") else len(back) == 4
        assert not list(tmp_path.glob(f".{name}.*"))


@pytest.mark.parametrize("text", [
    "lead_id,employees,country\n007,12,DE\n008,NA,\n009,,null\n",  # leading zeros, missing-value words
    "a;b\r\nx;1\r\ny;2\r\n",  # CRLF, semicolons
    "a,b\n1,2\n\n3,4\n",  # blank line
    "a,b\rx,1\ry,2\r",  # lone CR line ends
    "id,city\n1,Zürich\n2,São Paulo\n",  # non-ASCII, inner blanks
    "id,v\n1, 2\n2,3\n",  # a blank after the delimiter: pandas strips it (the plain reader is not used)
    'id,v\n1,"a,b"\n2,c\n',  # quotes: not the plain reader either
])
def test_plain_csv_reader_gives_exactly_the_pandas_frame(tmp_path, text):
    import io

    from leadscore.features.io import sniff_delimiter

    path = tmp_path / "t.csv"
    path.write_bytes(text.encode("utf-8"))
    expected = pd.read_csv(io.StringIO(text), sep=sniff_delimiter(text), dtype=str, skipinitialspace=True,
                           index_col=False)
    expected.columns = [c.strip() for c in expected.columns]
    pd.testing.assert_frame_equal(read_table(path), expected)


@pytest.mark.parametrize("values", [
    ["2025-08-18 00:00:18+00:00", "2025-08-18T00:00:18Z", None, " 2025-08-18 03:00:00-0500", ""],
    ["2025-08-18 00:00:18", "2025-08-18", "2025-08-18T10"],  # naive: read as UTC
    ["2025-08-18 00:00:18.123456+02:00", "2025-08-18 00:00:18+0530"],
    ["2025-08-18 00:00:18", "2025-08-18T00:00:18Z"],  # naive and offset mixed: the pandas path
    ["2025-08-18 00:00:18.1234567+02:00"],  # beyond microseconds: the pandas path
    ["2025-8-1 10:00", "20250818"],  # not ISO to the fast parser: the pandas path
])
def test_fast_timestamp_parsing_equals_the_pandas_reading(values):
    series = pd.Series(values, dtype="str")
    text = series.str.strip()
    text = text.mask(text == "")
    expected = pd.to_datetime(text, errors="coerce", utc=True, format="ISO8601").astype("datetime64[us, UTC]")
    pd.testing.assert_series_equal(parse_timestamps(series, source="t", column="ts"), expected)


def test_csv_writer_keeps_text_numbers_and_neutralises_formulas(tmp_path):
    frame = pd.DataFrame({"id": ["007", "a,b", 'say "hi"', "line\nbreak", "=cmd()", None],
                          "p": [0.1270578729096944, 3.0, 1e-05, -0.0, np.nan, 0.5],
                          "n": np.arange(6, dtype="int64"),
                          "flag": [True, False, True, False, True, False]})
    for columns in (["id", "p", "n"], ["id", "p", "n", "flag"]):  # the Arrow writer, then pandas' (booleans)
        path = write_table(frame[columns], tmp_path / f"out{len(columns)}.csv")
        back = pd.read_csv(path, dtype={"id": str})
        assert back["id"].tolist()[:5] == ["007", "a,b", 'say "hi"', "line\nbreak", "'=cmd()"]
        assert pd.isna(back["id"].iloc[5])
        np.testing.assert_array_equal(back["p"].to_numpy(), frame["p"].to_numpy())
        assert back["n"].tolist() == list(range(6))


@pytest.mark.parametrize("check_rows", [0, 10**9])  # the checked path (long columns) and the plain strip
def test_strip_text_removes_what_str_strip_removes(check_rows, monkeypatch):
    from leadscore.features import io as tabular

    monkeypatch.setattr(tabular, "STRIP_CHECK_ROWS", check_rows)
    for values in (["a", "b"], ["a ", "b"], ["a\xa0", "b"], ["\u3000a", "b"], ["a\x1f", "b"], [" a", None],
                   ["a", "b\u2028"], ["\tx", ""]):
        series = pd.Series(values, dtype="str")
        assert tabular.strip_text(series).tolist() == series.astype("string").str.strip().tolist(), values
