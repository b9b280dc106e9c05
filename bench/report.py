"""Medians over rounds, the table, the JSON result and the chart."""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .measure import Round

EMPTY = "empty handler"


@dataclass
class ArmResult:
    case: str
    label: str
    scale: str  # "" (the small probe account) or "big"
    kind: str
    goal: float
    rounds: list[Round] = field(default_factory=list)
    empty_rounds: list[Round] = field(default_factory=list)
    skipped: str = ""  # why it was not measured

    @staticmethod
    def _median(values: list[float]) -> float:
        finite = [v for v in values if not math.isnan(v)]
        return statistics.median(finite) if finite else math.nan

    @property
    def calls_per_s(self) -> float:
        return self._median([r.calls_per_s for r in self.rounds])

    @property
    def empty_calls_per_s(self) -> float:
        return self._median([r.calls_per_s for r in self.empty_rounds])

    @property
    def ratio(self) -> float:
        empty = self.empty_calls_per_s
        return self.calls_per_s / empty if empty and not math.isnan(empty) else math.nan

    @property
    def round_ratios(self) -> list[float]:
        """Each round's service calls/s over the same round's empty-handler calls/s."""
        return [
            s.calls_per_s / e.calls_per_s if e.calls_per_s else math.nan
            for s, e in zip(self.rounds, self.empty_rounds, strict=True)
        ]

    @property
    def p50_ms(self) -> float:
        return self._median([r.p50_ms for r in self.rounds])

    @property
    def p99_ms(self) -> float:
        return self._median([r.p99_ms for r in self.rounds])

    @property
    def cpu_us_per_call(self) -> float:
        return self._median([r.cpu_us_per_call for r in self.rounds])

    @property
    def db_us_per_call(self) -> float:
        return self._median([r.db_us_per_call for r in self.rounds])

    @property
    def empty_cpu_us_per_call(self) -> float:
        return self._median([r.cpu_us_per_call for r in self.empty_rounds])

    @property
    def non_ok(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in [*self.rounds, *self.empty_rounds]:
            for code, n in r.non_ok.items():
                total[code] = total.get(code, 0) + n
        return total

    @property
    def verified(self) -> bool:
        return all(r.verified for r in [*self.rounds, *self.empty_rounds])

    @property
    def h2load_trouble(self) -> int:
        """Requests h2load saw fail at the HTTP/2 level (not gRPC errors, which it cannot see)."""
        return sum(
            r.h2load.get("failed", 0) + r.h2load.get("errored", 0) + r.h2load.get("timeout", 0)
            for r in [*self.rounds, *self.empty_rounds]
        )

    @property
    def meets_goal(self) -> bool | None:
        return None if math.isnan(self.ratio) else self.ratio >= self.goal

    def to_json(self) -> dict[str, Any]:
        return {
            "case": self.case,
            "label": self.label,
            "scale": self.scale,
            "kind": self.kind,
            "skipped": self.skipped,
            "goal": self.goal,
            "calls_per_s": _num(self.calls_per_s),
            "empty_calls_per_s": _num(self.empty_calls_per_s),
            "ratio": _num(self.ratio),
            "round_ratios": [_num(x) for x in self.round_ratios],
            "meets_goal": self.meets_goal,
            "p50_ms": _num(self.p50_ms),
            "p99_ms": _num(self.p99_ms),
            "cpu_us_per_call": _num(self.cpu_us_per_call),
            "empty_cpu_us_per_call": _num(self.empty_cpu_us_per_call),
            "db_us_per_call": _num(self.db_us_per_call),
            "non_ok": self.non_ok,
            "answers_verified": self.verified,
            "h2load_http2_failures": self.h2load_trouble,
            "noisy_rounds": sum(r.noisy for r in [*self.rounds, *self.empty_rounds]),
            "rounds": [r.to_json() for r in self.rounds],
            "empty_rounds": [r.to_json() for r in self.empty_rounds],
        }


def _num(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 4)


def _fmt(x: float, spec: str) -> str:
    return "-" if math.isnan(x) else format(x, spec)


def _mib(kib: int | None) -> str:
    return "-" if kib is None else f"{kib / 1024:.1f} MiB"


def table(results: list[ArmResult], title: str) -> str:
    with_db = any(a.rounds and a.db_us_per_call > 0 for a in results)
    db_head = f" {'db us/call':>10}" if with_db else ""
    head = (
        f"{'RPC':34} {'calls/s':>8} {'p50 ms':>7} {'p99 ms':>7} {'empty/s':>8} {'ratio':>6} {'goal':9} "
        f"{'cpu us/call':>11}{db_head} {'empty cpu':>9} {'non-OK':>7}  answers counted by"
    )
    lines = [title, head, "-" * len(head)]
    for a in results:
        if a.skipped:
            lines.append(f"{a.label:34} skipped: {a.skipped}")
            continue
        met = a.meets_goal
        goal = f"{a.goal:.2f} {'ok' if met else 'MISS' if met is not None else ''}".ljust(9)
        non_ok = sum(a.non_ok.values())
        non_ok_text = f"{non_ok}!!" if non_ok else ("0" if a.verified else "?")
        counted = "server" if a.verified else "h2load UNVERIFIED"
        noisy = sum(r.noisy for r in [*a.rounds, *a.empty_rounds])
        if noisy:
            counted += f"; {noisy} noisy round(s)"
        db = f" {_fmt(a.db_us_per_call, '10.0f')}" if with_db else ""
        lines.append(
            f"{a.label:34} {_fmt(a.calls_per_s, '8.0f')} {_fmt(a.p50_ms, '7.2f')} {_fmt(a.p99_ms, '7.2f')} "
            f"{_fmt(a.empty_calls_per_s, '8.0f')} {_fmt(a.ratio, '6.2f')} {goal} "
            f"{_fmt(a.cpu_us_per_call, '11.0f')}{db} {_fmt(a.empty_cpu_us_per_call, '9.0f')} "
            f"{non_ok_text:>7}  {counted}"
        )
    return "\n".join(lines)


def scale_lines(results: list[ArmResult], small_users: int, big_users: int) -> list[str]:
    out = []
    by_case: dict[str, dict[str, ArmResult]] = {}
    for a in results:
        if not a.skipped:
            by_case.setdefault(a.case, {})[a.scale] = a
    for case, arms in by_case.items():
        small, big = arms.get(""), arms.get("big")
        if small is None or big is None:
            continue
        factor = big.cpu_us_per_call / small.cpu_us_per_call if small.cpu_us_per_call else math.nan
        out.append(
            f"scale {case}: {small_users:,} users {_fmt(small.calls_per_s, ',.0f')} calls/s, "
            f"{_fmt(small.cpu_us_per_call, '.0f')} us/call; {big_users:,} users {_fmt(big.calls_per_s, ',.0f')} "
            f"calls/s, {_fmt(big.cpu_us_per_call, '.0f')} us/call (CPU per call x{_fmt(factor, '.2f')})"
        )
    return out


def memory_line(memory: dict[str, dict[str, int]], users: int, accounts: int) -> str:
    seat = memory
    return (
        f"memory: seat server VmRSS {_mib(seat.get('service_start', {}).get('VmRSS'))} at start, "
        f"{_mib(seat.get('service_seeded', {}).get('VmRSS'))} after seeding {users:,} users in {accounts:,} accounts, "
        f"{_mib(seat.get('service_end', {}).get('VmRSS'))} at the end (peak VmHWM "
        f"{_mib(seat.get('service_end', {}).get('VmHWM'))}); empty handler "
        f"{_mib(seat.get('empty_end', {}).get('VmRSS'))}"
    )


def warnings(results: list[ArmResult]) -> list[str]:
    out = []
    for a in results:
        if a.skipped:
            continue
        if a.non_ok:
            codes = ", ".join(f"{n} {code}" for code, n in a.non_ok.items())
            out.append(f"!!! NON-OK ANSWERS in {a.label}: {codes} (calls/s counts only OK answers)")
        if not a.verified:
            reasons = {r.why_unverified for r in [*a.rounds, *a.empty_rounds] if not r.verified}
            out.append(
                f"!!! UNVERIFIED {a.label}: answers counted by h2load, which counts gRPC errors as HTTP 200 "
                f"({'; '.join(sorted(reasons))})"
            )
        noisy = [r for r in [*a.rounds, *a.empty_rounds] if r.noisy]
        if noisy:
            worst = max(r.foreign_cpu for r in noisy)
            worst_load = max(r.foreign_load_cpu for r in noisy)
            out.append(
                f"!!! NOISY {a.label}: {len(noisy)} round(s) ran while other programs used up to {worst:.2f} of "
                f"the servers' CPU and {worst_load:.2f} of h2load's"
            )
        if a.h2load_trouble:
            out.append(f"!!! h2load saw {a.h2load_trouble} failed/errored/timed-out requests in {a.label}")
    return out


def write_json(path: Path, document: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n")


def chart(path: Path, results: list[ArmResult], title: str) -> None:
    """Bars: each RPC's calls/s over the empty handler's; a line over each bar at its goal."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    shown = [a for a in results if not a.skipped and not math.isnan(a.ratio)]
    fig, ax = plt.subplots(figsize=(max(8.0, 1.1 * len(shown) + 2), 5.5), dpi=110)
    xs = list(range(len(shown)))
    colors = ["#3a7d44" if a.meets_goal else "#c0392b" for a in shown]
    bars = ax.bar(xs, [a.ratio for a in shown], color=colors, width=0.6)
    for bar, a in zip(bars, shown, strict=True):
        if not a.verified:
            bar.set_hatch("//")
            bar.set_edgecolor("black")
        ax.hlines(a.goal, bar.get_x() - 0.08, bar.get_x() + bar.get_width() + 0.08, colors="black", linewidth=2)
        ax.annotate(
            f"{a.ratio:.2f}" + ("" if not a.non_ok else "\nnon-OK!"),
            (bar.get_x() + bar.get_width() / 2, a.ratio),
            ha="center",
            va="bottom",
            fontsize=8,
        )
    ax.set_xticks(xs)
    ax.set_xticklabels([a.label.replace(" @", "\n@") for a in shown], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("calls/s ÷ empty handler's calls/s")
    top = max([a.ratio for a in shown] + [a.goal for a in shown] + [0.1])
    ax.set_ylim(0, min(1.15, top * 1.25) if top <= 1 else top * 1.15)
    ax.set_title(title, fontsize=9)
    ax.grid(axis="y", alpha=0.3)
    handles = [
        Patch(color="#3a7d44", label="meets goal"),
        Patch(color="#c0392b", label="below goal"),
        Patch(facecolor="white", edgecolor="black", hatch="//", label="unverified (h2load count)"),
        Line2D([0], [0], color="black", linewidth=2, label="goal"),
    ]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
