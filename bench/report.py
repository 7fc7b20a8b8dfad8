"""Figures as the bench reports them: a value, the baseline measured in the same run, the ratio, the target.

Absolute times drift on a shared 2-core machine, so every target is a ratio to a baseline
measured minutes earlier on the same machine (or a fixed bound where the issue sets one).
"""

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass
class Figure:
    """One line of the results table.

    `ratio` is value / baseline; `limit` is the most (or, with `at_least`, the least) the
    ratio may be (or the value itself, when there is no baseline) for the target to hold.
    """

    name: str
    value: float
    unit: str
    baseline: float | None = None
    baseline_name: str = ""
    limit: float | None = None
    at_least: bool = False
    note: str = ""

    @property
    def ratio(self) -> float | None:
        if self.baseline is None or self.baseline == 0:
            return None
        return self.value / self.baseline

    @property
    def held(self) -> bool | None:
        if self.limit is None:
            return None
        measured = self.ratio if self.ratio is not None else self.value
        return measured >= self.limit if self.at_least else measured <= self.limit

    def target(self) -> str:
        if self.limit is None:
            return "reported"
        sign = "≥" if self.at_least else "≤"
        what = "ratio" if self.baseline is not None else self.unit
        return f"{what} {sign} {self.limit:g}"

    def line(self) -> str:
        """The `figure, baseline, ratio` line printed as each figure is measured."""
        base = f"{_fmt(self.baseline)} {self.unit} ({self.baseline_name})" if self.baseline is not None else "-"
        ratio = f"{self.ratio:.3g}" if self.ratio is not None else "-"
        verdict = {True: "held", False: "NOT HELD", None: ""}[self.held]
        return (
            f"{self.name}: {_fmt(self.value)} {self.unit}, baseline {base}, ratio {ratio}  [{self.target()}] {verdict}"
        )

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, held=self.held, target=self.target())
        return data


@dataclass
class Report:
    """Every figure of one run, with the run's conditions."""

    quick: bool
    figures: list[Figure] = field(default_factory=list)
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)  # extra facts per figure module
    started: float = field(default_factory=time.time)

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        print(figure.line(), flush=True)
        return figure

    def write(self, directory: Path = RESULTS) -> tuple[Path, Path]:
        directory.mkdir(parents=True, exist_ok=True)
        machine = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": _cpus(),
            "note": "2 cores shared with other engineers running tests: absolute figures drift; "
                    "ratios are within one run",
        }
        duration_s = round(time.time() - self.started, 1)
        payload = {
            "quick": self.quick,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": duration_s,
            "machine": machine,
            "figures": [f.as_json() for f in self.figures],
            "sections": self.sections,
        }
        json_path = directory / "latest.json"
        json_path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
        md_path = directory / "latest.md"
        md_path.write_text(self.markdown(machine, duration_s), encoding="utf-8")
        return json_path, md_path

    def markdown(self, machine: dict[str, Any], duration: float) -> str:
        lines = [
            f"# authz benchmark results ({'quick' if self.quick else 'full'} run)",
            "",
            f"Python {machine['python']}, {machine['cpus']} CPUs, {machine['platform']}; "
            f"run took {duration:.0f} s. {machine['note']}.",
            "",
            "| figure | value | baseline | ratio | target | held |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for f in self.figures:
            base = f"{_fmt(f.baseline)} {f.unit} ({f.baseline_name})" if f.baseline is not None else "–"
            ratio = f"{f.ratio:.3g}" if f.ratio is not None else "–"
            held = {True: "yes", False: "**no**", None: "–"}[f.held]
            lines.append(f"| {f.name} | {_fmt(f.value)} {f.unit} | {base} | {ratio} | {f.target()} | {held} |")
        notes = [f"- {f.name}: {f.note}" for f in self.figures if f.note]
        if notes:
            lines += ["", "Notes:", *notes]
        return "\n".join(lines) + "\n"


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))
