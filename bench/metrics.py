"""The servers' own answer counts: Prometheus text exposition, parsed, and the
grpc_server_handled_total counter of one method, by status code."""

from __future__ import annotations

import math
import urllib.error
import urllib.request
from dataclasses import dataclass

HANDLED = "grpc_server_handled_total"
OK = "OK"


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


class ParseError(ValueError):
    """A line that is not Prometheus text exposition."""


def _metric_name_end(line: str) -> int:
    for i, ch in enumerate(line):
        if not (ch.isalnum() or ch in "_:"):
            return i
    return len(line)


def _parse_labels(text: str, start: int, line_no: int) -> tuple[dict[str, str], int]:
    """Parses `{a="x",b="y"}` from text[start] == "{"; returns the labels and the index after `}`."""
    labels: dict[str, str] = {}
    i = start + 1
    n = len(text)
    while True:
        while i < n and text[i] in " \t,":
            i += 1
        if i >= n:
            raise ParseError(f"line {line_no}: unterminated label set")
        if text[i] == "}":
            return labels, i + 1
        eq = text.find("=", i)
        if eq < 0:
            raise ParseError(f"line {line_no}: label without a value")
        name = text[i:eq].strip()
        if not name or not all(ch.isalnum() or ch == "_" for ch in name):
            raise ParseError(f"line {line_no}: bad label name {name!r}")
        i = eq + 1
        if i >= n or text[i] != '"':
            raise ParseError(f"line {line_no}: label value must be quoted")
        i += 1
        value: list[str] = []
        while True:
            if i >= n:
                raise ParseError(f"line {line_no}: unterminated label value")
            ch = text[i]
            if ch == "\\" and i + 1 < n:
                nxt = text[i + 1]
                value.append("\n" if nxt == "n" else nxt)
                i += 2
            elif ch == '"':
                i += 1
                break
            else:
                value.append(ch)
                i += 1
        labels[name] = "".join(value)


def _parse_value(text: str, line_no: int) -> float:
    token = text.strip().split()[0] if text.strip() else ""
    if not token:
        raise ParseError(f"line {line_no}: sample without a value")
    special = {"+inf": math.inf, "inf": math.inf, "-inf": -math.inf, "nan": math.nan}
    if token.lower() in special:
        return special[token.lower()]
    try:
        return float(token)
    except ValueError:
        raise ParseError(f"line {line_no}: bad value {token!r}") from None


def parse(text: str) -> list[Sample]:
    """Every sample of a Prometheus text (format 0.0.4, or OpenMetrics): comments and blank
    lines are skipped, label values unescaped, timestamps dropped."""
    samples = []
    for line_no, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        end = _metric_name_end(line)
        name = line[:end]
        if not name:
            raise ParseError(f"line {line_no}: no metric name in {raw!r}")
        rest = line[end:]
        labels: dict[str, str] = {}
        if rest.startswith("{"):
            labels, after = _parse_labels(rest, 0, line_no)
            rest = rest[after:]
        samples.append(Sample(name, labels, _parse_value(rest, line_no)))
    return samples


@dataclass(frozen=True)
class Handled:
    """grpc_server_handled_total of one unary method, by grpc_code. present is False when the
    exposition has no such series at all (nothing answered yet, or no such counter)."""

    by_code: dict[str, float]
    present: bool

    @property
    def ok(self) -> float:
        return self.by_code.get(OK, 0.0)

    def minus(self, before: Handled) -> dict[str, int]:
        """Answers per code between two scrapes (codes that did not move are left out)."""
        codes = set(self.by_code) | set(before.by_code)
        delta = {code: round(self.by_code.get(code, 0.0) - before.by_code.get(code, 0.0)) for code in codes}
        return {code: n for code, n in sorted(delta.items()) if n}


def handled(samples: list[Sample], service: str, method: str) -> Handled:
    by_code: dict[str, float] = {}
    present = False
    for s in samples:
        if s.name != HANDLED:
            continue
        if s.labels.get("grpc_service") != service or s.labels.get("grpc_method") != method:
            continue
        if s.labels.get("grpc_type", "unary") != "unary":
            continue
        present = True
        code = s.labels.get("grpc_code", "")
        by_code[code] = by_code.get(code, 0.0) + s.value
    return Handled(by_code, present)


class MetricsUnavailable(Exception):
    """No usable metrics at the address: nothing listens, an HTTP error, or unparsable text."""


def scrape(address: str, timeout: float = 5.0) -> list[Sample]:
    """GET http://address/metrics and parse it."""
    url = f"http://{address}/metrics"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return parse(response.read().decode("utf-8", "replace"))
    except urllib.error.HTTPError as exc:
        raise MetricsUnavailable(f"{url}: HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise MetricsUnavailable(f"{url}: {getattr(exc, 'reason', exc)}") from exc
    except ParseError as exc:
        raise MetricsUnavailable(f"{url}: {exc}") from exc
