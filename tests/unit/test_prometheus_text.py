"""The exposition parser agrees with prometheus_client's, and refuses malformed text clearly."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / ".collections"))

from ansible_collections.firebreak.incident.plugins.module_utils import prometheus_text as pt

pytestmark = pytest.mark.unit

CORPUS = Path(__file__).parent / "fixtures" / "exposition"
FILES = sorted(CORPUS.rglob("*.prom"))


def _value(v):
    # NaN == NaN for the comparison; the type (int or float) must agree too
    return ("nan",) if isinstance(v, float) and math.isnan(v) else (type(v).__name__, v)


def _families(families):
    return [
        (
            f.name,
            f.documentation,
            f.type,
            [(s.name, s.labels, _value(s.value), s.timestamp) for s in f.samples],
        )
        for f in families
    ]


def test_corpus_is_there():
    assert len(FILES) >= 25
    names = {p.name for p in FILES}
    assert {"edge_cases.prom", "client_python.prom", "go_client.prom", "crlf.prom"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(CORPUS)))
def test_agrees_with_prometheus_client(path):
    text = path.read_bytes().decode("utf-8")
    theirs = _families(text_string_to_metric_families(text))
    ours = _families(pt.parse_families(text))
    assert ours == theirs
    assert theirs, "every corpus file has families"


def test_edge_cases_cover_the_syntax_corners():
    families = {
        f.name: f for f in pt.parse_families((CORPUS / "generic/edge_cases.prom").read_text())
    }
    esc = families["escaped_help"]
    assert esc.documentation == 'Backslash \\ newline \n and a quote " stays, \\t stays'
    assert esc.samples[0].labels == {
        "path": "C:\\dir\\file",
        "msg": 'say "hi"\nbye',
        "raw": "tab\\tstays",
    }
    special = {s.labels["v"]: s.value for s in families["special_values"].samples}
    assert math.isnan(special["nan"])
    assert special["pinf"] == math.inf and special["ninf"] == -math.inf
    assert special["int"] == 42 and isinstance(special["int"], int)
    assert special["exp"] == 1.5e-3
    counter = families["with_timestamps"]
    assert counter.type == "counter"
    assert [s.timestamp for s in counter.samples] == [1700000000.0, -0.005]
    assert families["counter_without_suffix"].samples[0].name == "counter_without_suffix_total"
    # prometheus_client's grouping: TYPE names the family, quirk_total is not one of its names
    assert families["quirk"].samples == []
    assert families["quirk_total"].type == "unknown"
    assert families["explicitly_untyped"].type == "unknown"
    assert families["empty_family"].samples == []
    assert families["named_by_label"].samples[0].labels == {"x": "1"}
    assert families["quoted.name"].samples[0].value == 10
    assert [s.value for s in families["spacing"].samples] == [1, 2, 3, 4, 5, 6]
    assert families["spacing"].samples[0].labels == {"a": "1", "b": "2"}
    # a sample outside its family's allowed names becomes a family of its own
    assert families["hist_stray"].type == "unknown"


def test_samples_and_json_values():
    text = 'a{x="1"} NaN\nb +Inf 1000\nc -Inf\nd 2.5\n'
    dicts = [pt.sample_to_dict(s) for s in pt.parse_samples(text)]
    assert dicts == [
        {"name": "a", "labels": {"x": "1"}, "value": "NaN", "timestamp": None},
        {"name": "b", "labels": {}, "value": "+Inf", "timestamp": 1.0},
        {"name": "c", "labels": {}, "value": "-Inf", "timestamp": None},
        {"name": "d", "labels": {}, "value": 2.5, "timestamp": None},
    ]


def test_empty_text_has_no_families():
    assert pt.parse_families("") == []
    assert pt.parse_families("\n# just a comment\n\n") == []


# (text, line number, words the message must hold). Each one is refused by this parser;
# `lax` marks those prometheus_client accepts (it is laxer than the format's specification).
MALFORMED = [
    ("ok 1\nbad metric name 1\n", 2, "bad metric name", False),
    ("a 1\n\nno_value\n", 3, "no_value", False),
    ('x{a="1" 2\n', 1, "unterminated", False),
    ('x{a="1} 2\n', 1, "x{a=", False),
    ("x{a=1} 2\n", 1, "label", False),
    ('x{a="1",a="2"} 3\n', 1, "duplicate label", False),
    ('x{__reserved="1"} 3\n', 1, "reserved", False),
    ("x abc\n", 1, "invalid value", False),
    ("x 1_000\n", 1, "invalid value", False),
    ("x 1 2.5\n", 1, "timestamp", True),
    ("x 1 2 3\n", 1, "x 1 2 3", True),
    ("# TYPE x\nx 1\n", 1, "without a type", False),
    ("# TYPE x bogus\nx 1\n", 1, "unknown type", False),
    ("# TYPE 1x gauge\n", 1, "invalid metric name", False),
    ("# TYPE x gauge\n# TYPE x counter\nx 1\n", 2, "second TYPE", True),
    ("# HELP x h\nx 1\n# TYPE x gauge\n", 3, "after its samples", True),
    # no HELP or TYPE line opened the family: its samples still came first
    ("x 1\n# TYPE x gauge\n", 2, "after its samples", True),
    ("x 1\n# TYPE x gauge\nx 2\n", 2, "after its samples", True),
    ("x 1\ny 1\n# TYPE x gauge\n", 3, "after its samples", True),
    ('x{a="1"} 1\n# HELP x h\n# TYPE x gauge\n', 3, "after its samples", True),
    ("# TYPE x gauge\nx 1\ny 1\n# TYPE x gauge\nx 2\n", 4, "second TYPE", True),
    ("# HELP x a\n# HELP x b\nx 1\n", 2, "second HELP", True),
    ("# HELP x a\nx 1\n# HELP x b\n", 3, "second HELP", True),
    ("# TYPE x gauge\n# HELP x a\n# HELP x b\nx 1\n", 3, "second HELP", True),
    ("# HELP x a\n# TYPE x gauge\nx 1\ny 1\n# HELP x b\nx 2\n", 5, "second HELP", True),
    ("# HELP x\n# HELP x doc\n", 2, "second HELP", True),
    ('x{,a="1"} 2\n', 1, "label", True),
    ("<!DOCTYPE html>\n<html><body>Login</body></html>\n", 1, "DOCTYPE", False),
]


@pytest.mark.parametrize(
    ("text", "lineno", "words", "lax"), MALFORMED, ids=[repr(m[0])[:30] for m in MALFORMED]
)
def test_malformed_is_refused_with_line_number_and_line(text, lineno, words, lax):
    with pytest.raises(pt.PrometheusTextError) as caught:
        pt.parse_families(text)
    error = caught.value
    assert error.lineno == lineno
    assert str(error).startswith(f"line {lineno}: ")
    assert words in str(error)
    assert error.line == text.split("\n")[lineno - 1].strip()
    if not lax:
        with pytest.raises(ValueError):
            list(text_string_to_metric_families(text))


# A HELP or TYPE line without a metric name is a plain comment (as Go's expfmt takes it,
# prometheus_client too for HELP): (text, families as (name, documentation, type, samples)).
BARE_COMMENTS = [
    ("# HELP\nx 1\n", [("x", "", "unknown", [("x", 1)])]),
    ("# HELP \t \nx 1\n", [("x", "", "unknown", [("x", 1)])]),
    ("# TYPE\nx 1\n", [("x", "", "unknown", [("x", 1)])]),
    ("# TYPE  \n# HELP\n", []),
    ("#\tHELP\n#\tTYPE\n", []),
    (
        "# HELP x doc\n# HELP\n# TYPE\n# TYPE x gauge\nx 1\n",
        [("x", "doc", "gauge", [("x", 1)])],
    ),
    # the family stays open across the bare line (prometheus_client would close it there)
    ("# TYPE x gauge\n# TYPE\nx 1\n", [("x", "", "gauge", [("x", 1)])]),
    # HELP after the family's samples is allowed (only TYPE must come first), as in expfmt
    ("x 1\n# HELP x doc\n", [("x", "", "unknown", [("x", 1)]), ("x", "doc", "unknown", [])]),
]


@pytest.mark.parametrize(
    ("text", "expected"), BARE_COMMENTS, ids=[repr(b[0])[:30] for b in BARE_COMMENTS]
)
def test_help_or_type_without_a_name_is_a_plain_comment(text, expected):
    families = pt.parse_families(text)
    assert [
        (f.name, f.documentation, f.type, [(s.name, s.value) for s in f.samples]) for f in families
    ] == expected


def test_not_a_string_is_a_type_error():
    with pytest.raises(TypeError, match="bytes"):
        pt.parse_families(b"x 1\n")


def test_long_lines_are_shortened_in_messages():
    line = "x " + "9" * 500 + " 1 2"
    with pytest.raises(pt.PrometheusTextError) as caught:
        pt.parse_families(line)
    assert len(str(caught.value)) < 300
    assert caught.value.line == line
