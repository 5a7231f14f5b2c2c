# -*- coding: utf-8 -*-
# Copyright: (c) 2026, Firebreak maintainers (@firebreak)
# GNU General Public License v3.0+ (see LICENSES/GPL-3.0-or-later.txt or
# https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A parser for the Prometheus text exposition format (version 0.0.4), standard library only.

It gives the same metric families as ``prometheus_client.parser.text_string_to_metric_families``
on well-formed input (tests/unit/test_prometheus_text.py checks it on a recorded corpus):

- families are grouped the way prometheus_client groups them: a ``# TYPE``/``# HELP`` line
  opens a family; a sample whose name does not belong to the open family becomes a family of
  its own, of type ``unknown``;
- type ``untyped`` is reported as ``unknown``;
- a counter family is named without its ``_total`` suffix, and its samples always carry it
  (``# TYPE foo counter`` / ``foo 1`` gives family ``foo`` with sample ``foo_total``);
- values are ``int`` when written as an integer, ``float`` otherwise (``NaN``, ``+Inf``...);
  a timestamp (milliseconds in the text) is returned in seconds, as a float.

Where prometheus_client is lax about malformed input, this parser follows the format's
specification and refuses, with ``PrometheusTextError`` naming the line number and the line:
extra fields after the timestamp, a non-integer timestamp, a leading comma in a label set,
an unknown type, a second TYPE or a second HELP line for a metric name, a TYPE line after
samples of that name (all three anywhere earlier in the text, as Go's expfmt checks them,
whether or not a HELP or TYPE line opened the family; a HELP line may follow the samples).

A ``# HELP`` or ``# TYPE`` line without a metric name is a plain comment, as Go's expfmt
takes it (prometheus_client refuses a bare TYPE line and lets a bare HELP line close the open
family; here the open family stays open).
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import math
import re
from collections import namedtuple

Sample = namedtuple("Sample", ["name", "labels", "value", "timestamp"])

TYPES = ("counter", "gauge", "histogram", "summary", "untyped")

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_QUOTED = r'"(?:[^"\\]|\\.)*"'
_NAME_RE = re.compile(_NAME + r"\Z")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
# name, optional {label set}, value, optional timestamp; the label set may hold quoted braces.
_SAMPLE_RE = re.compile(
    r"(" + _NAME + r')?(?:[ \t]*\{((?:[^"}]|' + _QUOTED + r")*)\}[ \t]*|[ \t]+)"
    r"(\S+)(?:[ \t]+(\S+))?\Z"
)
# one term of a label set: name="value", or a quoted metric name (UTF-8 names), then , or end
_TERM_RE = re.compile(
    r"[ \t]*(" + _NAME + r"|" + _QUOTED + r")[ \t]*(?:=[ \t]*(" + _QUOTED + r"))?[ \t]*(,[ \t]*|\Z)"
)
# the common label set, name="value" pairs without blanks: one findall instead of a term loop
_PAIR = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"'
_SIMPLE_LABELS_RE = re.compile(r"(?:" + _PAIR + r"(?:," + _PAIR + r")*,?)?\Z")
_PAIR_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_COMMENT_RE = re.compile(r"#[ \t]+(HELP|TYPE)(?:[ \t]+(" + _QUOTED + r"|\S+))?(?:[ \t]+(.*))?\Z")
_ESCAPES = {"\\\\": "\\", "\\n": "\n", '\\"': '"'}
_LABEL_ESCAPE_RE = re.compile(r'\\[\\n"]')
_HELP_ESCAPE_RE = re.compile(r"\\[\\n]")
_INT_RE = re.compile(r"[+-]?[0-9]+\Z")
_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "summary": ("_count", "_sum", ""),
    "histogram": ("_count", "_sum", "_bucket"),
}


class PrometheusTextError(ValueError):
    """Malformed exposition text. ``lineno`` (1-based) and ``line`` locate it."""

    def __init__(self, message, lineno, line):
        shown = line if len(line) <= 200 else line[:200] + "..."
        super(PrometheusTextError, self).__init__("line %d: %s: %r" % (lineno, message, shown))
        self.reason = message
        self.lineno = lineno
        self.line = line


class Family(object):
    """One metric family: ``name``, ``documentation``, ``type`` and ``samples`` (Sample tuples)."""

    __slots__ = ("documentation", "name", "samples", "type")

    def __init__(self, name, documentation, type_, samples):
        self.name = name
        self.documentation = documentation
        self.type = type_
        self.samples = samples

    def __repr__(self):
        return "Family(%r, %r, %r, %d samples)" % (
            self.name,
            self.documentation,
            self.type,
            len(self.samples),
        )


def _unescape(text, pattern):
    if "\\" not in text:
        return text
    return pattern.sub(lambda m: _ESCAPES[m.group(0)], text)


def _unquote_name(token):
    """A metric name token, quoted (UTF-8 names) or not; None when invalid."""
    if token.startswith('"'):
        if len(token) < 2 or not token.endswith('"'):
            return None
        name = _unescape(token[1:-1], _LABEL_ESCAPE_RE)
        return name or None
    return token if _NAME_RE.match(token) else None


def _number(text):
    if "_" in text:  # float() would accept 1_000; the format does not
        raise ValueError(text)
    if _INT_RE.match(text):
        return int(text)
    return float(text)


def _parse_labels(body):
    """The inside of {...}: returns (labels, name or None); raises ValueError(reason)."""
    if _SIMPLE_LABELS_RE.match(body):
        pairs = _PAIR_RE.findall(body)
        labels = dict((k, _unescape(v, _LABEL_ESCAPE_RE) if "\\" in v else v) for k, v in pairs)
        if len(labels) == len(pairs) and not any(k.startswith("__") for k in labels):
            return labels, None
    labels = {}
    name = None
    pos = 0
    end = len(body)
    if not body.strip(" \t"):
        return labels, None
    while pos < end:
        match = _TERM_RE.match(body, pos)
        if not match or match.end() == pos:
            raise ValueError("invalid label set near %r" % (body[pos : pos + 40],))
        token, quoted_value, _sep = match.groups()
        pos = match.end()
        if quoted_value is None:
            # a bare quoted string is the metric name ({"my.metric", a="b"})
            if not token.startswith('"') or name is not None:
                raise ValueError("label %r has no value" % (token,))
            name = _unquote_name(token)
            if name is None:
                raise ValueError("invalid quoted metric name %r" % (token,))
        else:
            label = _unescape(token[1:-1], _LABEL_ESCAPE_RE) if token.startswith('"') else token
            value = _unescape(quoted_value[1:-1], _LABEL_ESCAPE_RE)
            if label == "__name__":
                if name is not None:
                    raise ValueError("metric name given twice")
                name = value
                continue
            if label.startswith("__"):
                raise ValueError("label name %r is reserved (starts with __)" % (label,))
            if not label:
                raise ValueError("empty label name")
            if label in labels:
                raise ValueError("duplicate label %r" % (label,))
            labels[label] = value
    return labels, name


def _parse_sample(line, cache):
    """One sample line -> Sample; raises ValueError(reason). ``cache`` maps the label sets
    already seen in this text to their parse (expositions repeat them line after line)."""
    match = _SAMPLE_RE.match(line)
    if not match:
        if "{" in line and "}" not in line:
            raise ValueError("unterminated label set")
        if _NAME_RE.match(line.split(None, 1)[0] if line.split() else ""):
            raise ValueError('expected "<name>[{labels}] <value> [<timestamp ms>]"')
        raise ValueError("not a sample: invalid metric name or syntax")
    name, label_body, value_text, ts_text = match.groups()
    if label_body is None:
        labels = {}
        if name is None:
            raise ValueError("invalid metric name")
    else:
        parsed = cache.get(label_body)
        if parsed is None:
            parsed = cache[label_body] = _parse_labels(label_body)
        labels, inner_name = dict(parsed[0]), parsed[1]
        if inner_name is not None:
            if name is not None:
                raise ValueError("metric name given twice")
            name = inner_name
        elif name is None:
            raise ValueError("no metric name")
    try:
        value = _number(value_text)
    except ValueError:
        raise ValueError("invalid value %r" % (value_text,)) from None
    timestamp = None
    if ts_text is not None:
        if not _INT_RE.match(ts_text):
            raise ValueError("invalid timestamp %r (integer milliseconds expected)" % (ts_text,))
        timestamp = int(ts_text) / 1000
    return Sample(name, labels, value, timestamp)


def _build(name, documentation, type_, samples):
    if type_ == "counter":
        if name.endswith("_total"):
            name = name[:-6]
        else:
            samples = [Sample(s.name + "_total", s.labels, s.value, s.timestamp) for s in samples]
    return Family(name, documentation, "unknown" if type_ == "untyped" else type_, samples)


def _header(line, lineno, helped, typed, sampled):
    """A HELP or TYPE line, checked against the ones seen so far (and recorded): (keyword,
    metric name, rest) or None for a plain comment; PrometheusTextError if malformed."""
    match = _COMMENT_RE.match(line)
    if not match:
        return None  # a plain comment
    keyword, token, rest = match.groups()
    if token is None:
        return None  # "# HELP" or "# TYPE" alone: a plain comment, as in Go's expfmt
    candidate = _unquote_name(token)
    if candidate is None:
        raise PrometheusTextError(
            "invalid metric name %r in %s line" % (token, keyword), lineno, line
        )
    if keyword == "HELP":
        if candidate in helped:
            raise PrometheusTextError("second HELP line for %r" % (candidate,), lineno, line)
        helped.add(candidate)
        return keyword, candidate, rest
    if rest is None:
        raise PrometheusTextError("TYPE line without a type", lineno, line)
    if rest not in TYPES:
        raise PrometheusTextError(
            "unknown type %r (expected one of %s)" % (rest, ", ".join(TYPES)),
            lineno,
            line,
        )
    if candidate in typed:
        raise PrometheusTextError("second TYPE line for %r" % (candidate,), lineno, line)
    if candidate in sampled:
        raise PrometheusTextError("TYPE line for %r after its samples" % (candidate,), lineno, line)
    typed.add(candidate)
    return keyword, candidate, rest


def parse_families(text):
    """Parse exposition text into a list of Family, in order; PrometheusTextError if malformed."""
    if not isinstance(text, str):
        raise TypeError("exposition text must be a string, got %s" % type(text).__name__)
    families = []
    name = ""
    documentation = ""
    type_ = "untyped"
    samples = []
    allowed = ()
    cache = {}
    # metric names given a HELP line, a TYPE line, samples (families as grouped here: a
    # sample outside the open family is counted under its own name), anywhere so far
    helped = set()
    typed = set()
    sampled = set()
    for lineno, raw in enumerate(text.split("\n"), 1):
        line = raw.strip()
        if not line:
            continue
        if line[0] == "#":
            header = _header(line, lineno, helped, typed, sampled)
            if header is None:
                continue
            keyword, candidate, rest = header
            if candidate != name:
                if name:
                    families.append(_build(name, documentation, type_, samples))
                if keyword == "HELP":
                    name, type_, samples, allowed = candidate, "untyped", [], (candidate,)
                else:
                    name, documentation, samples = candidate, "", []
            if keyword == "HELP":
                documentation = _unescape(rest, _HELP_ESCAPE_RE) if rest else ""
            else:
                type_ = rest
                allowed = tuple(name + suffix for suffix in _SUFFIXES.get(rest, ("",)))
            continue
        try:
            sample = _parse_sample(line, cache)
        except ValueError as e:
            raise PrometheusTextError(str(e), lineno, line) from None
        if sample.name in allowed:
            samples.append(sample)
            sampled.add(name)
            continue
        if name:
            families.append(_build(name, documentation, type_, samples))
        name, documentation, type_, samples, allowed = "", "", "untyped", [], ()
        sampled.add(sample.name)
        families.append(_build(sample.name, "", "untyped", [sample]))
    if name:
        families.append(_build(name, documentation, type_, samples))
    return families


def parse_samples(text):
    """All samples of an exposition, flattened, in order (names as in ``parse_families``)."""
    return [sample for family in parse_families(text) for sample in family.samples]


def json_value(value):
    """A sample value for JSON: finite numbers as they are, NaN and infinities as the strings
    Prometheus writes (``NaN``, ``+Inf``, ``-Inf``), since JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        if math.isnan(value):
            return "NaN"
        return "+Inf" if value > 0 else "-Inf"
    return value


def sample_to_dict(sample):
    """``{name, labels, value, timestamp}``, JSON-ready (see ``json_value``)."""
    return {
        "name": sample.name,
        "labels": dict(sample.labels),
        "value": json_value(sample.value),
        "timestamp": sample.timestamp,
    }


def family_to_dict(family):
    return {
        "name": family.name,
        "documentation": family.documentation,
        "type": family.type,
        "samples": [sample_to_dict(s) for s in family.samples],
    }
