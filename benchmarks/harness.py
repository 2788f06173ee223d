"""The shape every benchmark reports in, and how figures are printed.

A benchmark module is ``benchmarks/bench_<topic>.py`` with a function
``run(quick: bool = False) -> list[Figure]``. Each figure is a ratio measured
side by side in the same run (servegate's way vs the baseline it must beat or
match), never an absolute time compared with a number from another day.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class Figure:
    name: str            # e.g. "promote 1 GB vs 10 MB"
    ratio: float         # the measured ratio
    goal: float          # the bound the ratio must meet
    higher_is_better: bool = False  # False: ratio <= goal passes; True: ratio >= goal passes
    detail: dict = field(default_factory=dict)  # the raw numbers behind the ratio

    @property
    def passed(self) -> bool:
        return self.ratio >= self.goal if self.higher_is_better else self.ratio <= self.goal

    def line(self) -> str:
        op = ">=" if self.higher_is_better else "<="
        verdict = "PASS" if self.passed else "FAIL"
        return f"{self.name:<55} ratio {self.ratio:8.3f}   goal {op} {self.goal:<6g} {verdict}"

    def to_dict(self) -> dict:
        return {**asdict(self), "passed": self.passed}
