"""Competition files and reports with hostile video names: CSV quoting round trips.

A file name may hold any character but `/` and NUL. Every file offline scoring writes
(prediction file, errors report, windows CSV, journal) and merge must carry such a name
through unchanged, and the prediction file must stay CSV that any reader accepts.
Property-based tests (hypothesis) cover the readers and writers with generated names.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monitor.errors import DatasetError
from monitor.offline.journal import Journal, VideoResult
from monitor.offline.predictions import (
    ErrorEntry,
    Note,
    Prediction,
    csv_field,
    parse_csv,
    read_errors,
    read_labels,
    read_name_list,
    read_notes,
    read_predictions,
    write_errors,
    write_predictions,
)
from monitor.offline.report import write_windows_csv

# Names that broke or could break a naive `f"{name},{score}"` writer or a stripping reader.
HOSTILE_NAMES = [
    "plain.mp4",
    "comma,in,name.mp4",
    'quote"in"name.mp4',
    '"fully quoted".mp4',
    "new\nline.mp4",
    "carriage\rreturn.mp4",
    "crlf\r\nname.mp4",
    " leading space.mp4",
    "trailing space.mp4 ",
    "tab\tname.mp4",
    "ünïcödé-видео-视频.mp4",
    "-leading-dash.mp4",
    "line\u2028separator.mp4",
    "next\x85line.mp4",
    "#not-a-comment.mp4",
    "back\\slash.mp4",
]

FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# Any character a Linux file name may hold (no "/", no NUL), weighted towards the ones
# that matter to CSV: separators, quotes, line breaks and white space.
NAME_CHARS = st.one_of(
    st.sampled_from(list(',"\n\r\t \u2028\x85;')),
    st.characters(codec="utf-8", exclude_characters="/\x00"),
)
NAMES = st.text(NAME_CHARS, min_size=1, max_size=24).filter(lambda n: n not in (".", ".."))


def csv_rows(path: Path) -> list[list[str]]:
    """The file as Python's csv module reads it: what any standard CSV reader sees."""
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.reader(fh))


# --- examples ----------------------------------------------------------------------------


def test_prediction_file_round_trips_names_that_need_quoting(tmp_path: Path) -> None:
    rows = [Prediction(n, i / 20) for i, n in enumerate(HOSTILE_NAMES)]
    out = write_predictions(tmp_path / "p.txt", rows)
    assert read_predictions(out) == rows
    # still competition-valid CSV: a standard reader sees the same names and scores
    assert csv_rows(out) == [["video_name", "y_pred"]] + [
        [r.video_name, f"{r.y_pred:.6f}"] for r in rows
    ]
    plain = out.read_text(encoding="utf-8").splitlines()
    assert plain[0] == "video_name,y_pred" and plain[1] == "plain.mp4,0.000000"


def test_reader_takes_quoted_names_verbatim_and_trims_unquoted_ones(tmp_path: Path) -> None:
    p = tmp_path / "p.txt"
    p.write_bytes(
        b'video_name,y_pred\r\n  a.mp4 , 0.5\r\n" b.mp4 ",0.25\n "c,d.mp4" ,1\r"e""f",0\n'
    )
    assert read_predictions(p) == [
        Prediction("a.mp4", 0.5),
        Prediction(" b.mp4 ", 0.25),
        Prediction("c,d.mp4", 1.0),
        Prediction('e"f', 0.0),
    ]
    p.write_text('video_name,y_pred\n"open.mp4,0.5\n')
    with pytest.raises(DatasetError, match=r"p.txt:2: .*quote"):
        read_predictions(p)
    p.write_text('video_name,y_pred\n"a.mp4"x,0.5\n')
    with pytest.raises(DatasetError, match=r"p.txt:2: "):
        read_predictions(p)


def test_label_and_name_lists_with_quoted_names(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    body = "".join(f"{csv_field(n)},{i % 2}\n" for i, n in enumerate(HOSTILE_NAMES))
    labels.write_bytes(("video_name,target\n" + body).encode())
    assert read_labels(labels) == {n: i % 2 for i, n in enumerate(HOSTILE_NAMES)}
    assert read_name_list(labels) == HOSTILE_NAMES
    bare = tmp_path / "names.txt"
    bare.write_bytes("".join(f"{csv_field(n)}\n" for n in HOSTILE_NAMES).encode())
    assert read_name_list(bare) == HOSTILE_NAMES
    # a bare list whose line holds an unquoted comma is ambiguous: refused, not truncated
    bare.write_text("a.mp4\nb,c.mp4\n")
    with pytest.raises(DatasetError, match=r"names.txt:2: .*quote"):
        read_name_list(bare)


def test_errors_report_round_trips_names_and_notes(tmp_path: Path) -> None:
    errs = [ErrorEntry(n, "corruptmedia", f"{n}: broken\nsecond line") for n in HOSTILE_NAMES]
    notes = [Note(n, "shortaudio", "audio track 1.00 s of 4.00 s") for n in HOSTILE_NAMES[:3]]
    path = write_errors(tmp_path / "p.txt.errors.json", errs, 0.5, notes)
    assert read_errors(path) == errs
    assert read_notes(path) == notes
    old = tmp_path / "old.errors.json"  # written before notes existed
    old.write_text('{"count": 0, "neutral_score": 0.5, "errors": []}\n')
    assert read_notes(old) == [] and read_errors(old) == []


def test_windows_csv_and_journal_round_trip_names(tmp_path: Path) -> None:
    results = [
        VideoResult(
            i,
            n,
            "ok",
            starts=(0.0, 0.5),
            fused=(0.1, 0.2),
            audio=(0.3, 0.4),
            visual=(0.5, 0.6),
            faces_found=(2, 0),
        )
        for i, n in enumerate(HOSTILE_NAMES)
    ]
    out = write_windows_csv(tmp_path / "w.csv", results)
    rows = csv_rows(out)
    assert rows[0][0] == "video_name" and len(rows) == 1 + 2 * len(results)
    assert [r[0] for r in rows[1::2]] == HOSTILE_NAMES
    ident = {"inputs_sha256": "x"}
    with Journal.open(tmp_path / "j.jsonl", ident, resume=False, overwrite=False) as j:
        j.append(results)
    with Journal.open(tmp_path / "j.jsonl", ident, resume=True, overwrite=False) as j:
        assert [j.results[i].name for i in sorted(j.results)] == HOSTILE_NAMES


# --- properties --------------------------------------------------------------------------


@FAST
@given(
    rows=st.lists(
        st.tuples(NAMES, st.floats(0.0, 1.0, allow_nan=False)),
        min_size=1,
        max_size=8,
        unique_by=lambda r: r[0],
    )
)
def test_prediction_round_trip_property(tmp_path: Path, rows: list[tuple[str, float]]) -> None:
    preds = [Prediction(n, v) for n, v in rows]
    out = write_predictions(tmp_path / "p.txt", preds)
    back = read_predictions(out)
    assert [r.video_name for r in back] == [n for n, _ in rows]
    assert [r.y_pred for r in back] == [float(f"{v:.6f}") for _, v in rows]
    assert csv_rows(out)[1:] == [[n, f"{v:.6f}"] for n, v in rows]


@FAST
@given(
    rows=st.lists(
        st.tuples(NAMES, st.integers(0, 1)), min_size=1, max_size=8, unique_by=lambda r: r[0]
    ),
    crlf=st.booleans(),
)
def test_label_reader_property(tmp_path: Path, rows: list[tuple[str, int]], crlf: bool) -> None:
    eol = "\r\n" if crlf else "\n"
    text = f"video_name,target{eol}" + "".join(f"{csv_field(n)},{t}{eol}" for n, t in rows)
    p = tmp_path / "labels.txt"
    p.write_bytes(text.encode())
    assert list(read_labels(p).items()) == rows


@FAST
@given(
    names=st.lists(NAMES, min_size=1, max_size=8, unique=True).filter(
        lambda ns: ns[0].strip() != "video_name"
    ),
    header=st.booleans(),
)
def test_name_list_reader_property(tmp_path: Path, names: list[str], header: bool) -> None:
    text = ("video_name\n" if header else "") + "".join(f"{csv_field(n)}\n" for n in names)
    p = tmp_path / "names.txt"
    p.write_bytes(text.encode())
    assert read_name_list(p) == names


@FAST
@given(text=st.text(max_size=80))
def test_readers_fail_only_with_a_dataset_error(tmp_path: Path, text: str) -> None:
    """Whatever a list file holds, a reader returns or raises DatasetError naming it."""
    p = tmp_path / "any.txt"
    for body in (text, "video_name,y_pred\n" + text, "video_name,target\n" + text):
        p.write_bytes(body.encode("utf-8", "surrogatepass"))
        for reader in (read_predictions, read_labels, read_name_list):
            try:
                reader(p)
            except DatasetError as exc:
                assert "any.txt" in str(exc)


@FAST
@given(
    errs=st.lists(st.builds(ErrorEntry, NAMES, st.text(max_size=12), st.text(max_size=40))),
    notes=st.lists(st.builds(Note, NAMES, st.text(max_size=12), st.text(max_size=40))),
    neutral=st.floats(0.0, 1.0),
)
def test_errors_report_round_trip_property(
    tmp_path: Path, errs: list[ErrorEntry], notes: list[Note], neutral: float
) -> None:
    path = write_errors(tmp_path / "e.json", errs, neutral, notes)
    assert read_errors(path) == errs
    assert read_notes(path) == notes


@FAST
@given(name=NAMES)
def test_csv_field_is_what_csv_module_reads_back(name: str) -> None:
    row = f"{csv_field(name)},0.5\n"
    assert next(csv.reader(io.StringIO(row, newline=""))) == [name, "0.5"]


@FAST
@given(text=st.text(st.sampled_from(list(",\n\r\t ab")), max_size=30))
def test_quote_free_fast_path_reads_like_the_full_parser(text: str) -> None:
    # a trailing quoted row sends the same text through the full parser
    assert parse_csv(text, "f") == parse_csv(text + '\n""', "f")[:-1]
