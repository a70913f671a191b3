"""Collecting figures during a run and writing them as Markdown and JSON.

In: targets (a ratio against a bound) and measurements (a figure with its unit), added as the run
goes. Out: `results.json` (everything, machine-readable) and `results.md` (two tables: targets
first, then every measurement behind them), written over the previous run's files.
"""

from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

Direction = Literal["at_least", "at_most"]


@dataclass(frozen=True)
class Target:
    id: str
    goal: str
    figure: float | None
    bound: float
    direction: Direction
    how: str
    note: str = ""

    @property
    def met(self) -> bool | None:
        if self.figure is None:
            return None
        if self.direction == "at_least":
            return self.figure >= self.bound
        return self.figure <= self.bound


@dataclass(frozen=True)
class Measurement:
    id: str
    what: str
    value: float
    unit: str


@dataclass
class Results:
    size: str
    started: float = field(default_factory=time.time)
    targets: list[Target] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    load: list[float] = field(default_factory=list)

    def measure(self, id: str, what: str, value: float, unit: str = "s") -> float:
        self.measurements.append(Measurement(id, what, value, unit))
        print(f"  {id} {what}: {_shown(value, unit)}", flush=True)
        return value

    def target(self, target: Target) -> None:
        self.targets.append(target)
        print(f"  {target.id} {target.goal}: {_ratio(target)} ({_verdict(target)})", flush=True)

    def sample_load(self) -> None:
        self.load.append(os.getloadavg()[0])

    def to_json(self) -> dict[str, object]:
        return {
            "size": self.size,
            "date": time.strftime("%Y-%m-%d", time.localtime(self.started)),
            "seconds": round(time.time() - self.started, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "load_average_1min": [round(x, 2) for x in self.load],
            },
            "targets": [{**asdict(t), "met": t.met} for t in self.targets],
            "measurements": [asdict(m) for m in self.measurements],
        }

    def to_markdown(self) -> str:
        data = self.to_json()
        machine = data["machine"]
        assert isinstance(machine, dict)
        lines = [
            f"# Benchmark results ({self.size})",
            "",
            f"Run on {data['date']}, {machine['cpus']} cores, Python {machine['python']}, "
            f"{data['seconds']} s in all. One-minute load average sampled during the run: "
            f"{', '.join(str(x) for x in machine['load_average_1min'])} (the machine is shared; "
            "figures are ratios of timings taken side by side in this run).",
            "",
            "| target | goal | figure | bound | met | how it is measured |",
            "|---|---|---|---|---|---|",
        ]
        for t in self.targets:
            bound = f"{'≥' if t.direction == 'at_least' else '≤'} {t.bound:g}"
            how = t.how + (f" {t.note}" if t.note else "")
            lines.append(f"| {t.id} | {t.goal} | {_ratio(t)} | {bound} | {_verdict(t)} | {how} |")
        lines += ["", "| target | measurement | value |", "|---|---|---|"]
        lines += [f"| {m.id} | {m.what} | {_shown(m.value, m.unit)} |" for m in self.measurements]
        return "\n".join(lines) + "\n"

    def write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(self.to_json(), indent=2) + "\n")
        (out / "results.md").write_text(self.to_markdown())


def _ratio(target: Target) -> str:
    return "not measured" if target.figure is None else f"{target.figure:.2f}"


def _verdict(target: Target) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[target.met]


def _shown(value: float, unit: str) -> str:
    if unit == "s":
        return f"{value:.3f} s"
    if unit == "MB":
        return f"{value:.1f} MB"
    if unit == "ratio":
        return f"{value:.2f}"
    if unit == "/s":
        return f"{value:.0f}/s"
    return f"{value:g} {unit}".strip()
