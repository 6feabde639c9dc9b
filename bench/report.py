"""
What a benchmark reports, and its two renderings: one JSON object or a readable table.
"""

import json
from dataclasses import dataclass, field


@dataclass(frozen=True)
class RatioGoal:
    """
    A bound the ratio figure/baseline of one figure should meet.

    @ivar bound: the ratio the figure is compared with.
    @ivar atLeast: C{True} when the ratio must be at least C{bound} (higher is better, such as
        a throughput), C{False} when at most (lower is better, such as a latency).
    """

    bound: float
    atLeast: bool

    def isMet(self, ratio):
        """
        @param ratio: figure / baseline.
        @return: whether C{ratio} meets this goal.
        """
        return ratio >= self.bound if self.atLeast else ratio <= self.bound

    def __str__(self):
        return f"{'>=' if self.atLeast else '<='} {self.bound:.2f}"


@dataclass(frozen=True)
class BenchmarkResult:
    """
    The figures of one benchmark run and the baseline measured in the same run.

    @ivar name: the benchmark's name, as given on the command line.
    @ivar figures: figure name (with its unit, e.g. C{throughput_mib_s}) to its value.
    @ivar baseline: the same names to their values measured on the baseline.
    @ivar subject: what the figures were measured on, for the table heading.
    @ivar baselineName: what the baseline was measured on, for the table heading.
    @ivar notes: how the figures were obtained (scale, rounds, statistic), for the table.
    @ivar goals: figure name to the L{RatioGoal} its ratio should meet, where there is one.
    """

    name: str
    figures: dict
    baseline: dict
    subject: str = "figures"
    baselineName: str = "baseline"
    notes: str = ""
    goals: dict = field(default_factory=dict)

    def __post_init__(self):
        if set(self.figures) != set(self.baseline):
            raise ValueError(f"figures {sorted(self.figures)} and baseline {sorted(self.baseline)} differ")

    @property
    def ratios(self):
        """Figure name to figure / baseline."""
        return {name: value / self.baseline[name] for name, value in self.figures.items()}

    def toJSON(self):
        """
        @return: the JSON-able dict C{{"name", "figures", "baseline", "ratios"}}.
        """
        return {"name": self.name, "figures": dict(self.figures), "baseline": dict(self.baseline), "ratios": self.ratios}


def renderJSON(result):
    """
    @param result: a L{BenchmarkResult}.
    @return: C{result} as one line of JSON.
    """
    return json.dumps(result.toJSON(), sort_keys=True)


def renderTable(result):
    """
    @param result: a L{BenchmarkResult}.
    @return: C{result} as a heading and a table of figures, baseline, ratios and goals.
    """
    ratios = result.ratios
    header = ("figure", result.subject, result.baselineName, "ratio", "goal", "")
    rows = [header]
    for name, value in result.figures.items():
        goal = result.goals.get(name)
        verdict = "" if goal is None else ("met" if goal.isMet(ratios[name]) else "MISSED")
        rows.append(
            (name, _number(value), _number(result.baseline[name]), f"{ratios[name]:.3f}", str(goal or ""), verdict)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = [f"{result.name}: {result.subject} against {result.baselineName}, measured in the same run"]
    if result.notes:
        lines.append(result.notes)
    lines.append("")
    for row in rows:
        cells = [row[0].ljust(widths[0])] + [cell.rjust(width) for cell, width in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _number(value):
    """Four significant digits, without an exponent for the magnitudes benchmarks report."""
    return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
