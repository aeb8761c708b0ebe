"""What every family of benchmarks shares: where things live, a row of the
report, the side processes, the source image and the chart."""

from __future__ import annotations

import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "results"
GLANCE_VENV = BENCH / ".venv-glance"
FSSTORE_PY = sys.executable
MiB = 1024 * 1024


@dataclasses.dataclass
class Row:
    case: str
    fsstore: str
    reference: str
    ratio: float | None
    target: str
    met: bool | None

    def markdown(self) -> str:
        ratio = "" if self.ratio is None else f"{self.ratio:.2f}"
        met = {True: "yes", False: "**no**", None: "-"}[self.met]
        return (
            f"| {self.case} | {self.fsstore} | {self.reference} | {ratio} | "
            f"{self.target} | {met} |"
        )


def table(rows: list[Row]) -> str:
    """``rows`` as the markdown table every result file holds."""
    return (
        "| case | fsstore | reference | ratio | target | met |\n"
        "|---|---:|---:|---:|---|---|\n" + "\n".join(r.markdown() for r in rows) + "\n"
    )


def versus(
    case: str,
    value: float,
    reference: float,
    unit: str,
    op: str | None = None,
    bound: float = 0.0,
) -> Row:
    """fsstore's figure against a reference from the same run; the target is
    on their ratio (``op`` ">=" or "<=" ``bound``), or none: reported only."""
    ratio = value / reference
    met = None if op is None else ratio >= bound if op == ">=" else ratio <= bound
    return Row(
        case,
        f"{value:.0f} {unit}",
        f"{reference:.0f} {unit}",
        ratio,
        "report" if op is None else f"{op} {bound}",
        met,
    )


def within(
    case: str,
    value: float,
    unit: str,
    bound: float,
    digits: int = 0,
    reference: float | None = None,
) -> Row:
    """fsstore's figure against an absolute bound; a reference, if given, is
    shown beside it with their ratio."""
    return Row(
        case,
        f"{value:.{digits}f} {unit}",
        "" if reference is None else f"{reference:.{digits}f} {unit}",
        None if reference is None else value / reference,
        f"<= {bound} {unit}",
        value <= bound,
    )


def glance_python() -> str:
    py = GLANCE_VENV / "bin" / "python"
    marker = GLANCE_VENV / ".installed-s3"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", str(GLANCE_VENV)], check=True)
        subprocess.run(
            [
                str(py),
                "-m",
                "pip",
                "install",
                "--quiet",
                "glance_store==5.7.0",
                "boto3",
            ],
            check=True,
        )
        marker.touch()
    return str(py)


def side(python: str, case: str, *args: object) -> dict:
    proc = subprocess.run(
        [python, str(BENCH / "sides.py"), case, *map(str, args)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{case} failed: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.splitlines()[-1])


def fresh(name: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=WORK))
    (path / "images").mkdir()
    return path


def mib_s(size: int, seconds: float) -> float:
    return size / MiB / seconds


def make_source(size: int) -> Path:
    src = WORK / f"source-{size // MiB}m.bin"
    if not src.exists() or src.stat().st_size != size:
        with open(src, "wb") as f:
            for _ in range(size // (4 * MiB)):
                f.write(os.urandom(4 * MiB))
    subprocess.run(["cat", str(src)], stdout=subprocess.DEVNULL, check=True)  # warm
    return src


def median(values: list[float]) -> float:
    return statistics.median(values)


def chart(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [r for r in rows if r.ratio is not None]
    fig, ax = plt.subplots(figsize=(10, 0.45 * len(shown) + 1.5))
    colors = [
        {True: "tab:green", False: "tab:red", None: "tab:grey"}[r.met] for r in shown
    ]
    ax.barh([r.case for r in shown], [r.ratio for r in shown], color=colors)
    for i, r in enumerate(shown):
        # A target in units (not a ratio) applies to fsstore's own figure.
        absolute = r.target.split()[-1] in ("us", "ms", "s", "MiB")
        label = f" {r.ratio:.2f}" + (f", {r.fsstore}" if absolute else "")
        ax.text(r.ratio, i, f"{label} (target {r.target})", va="center", fontsize=8)
    ax.axvline(1.0, color="grey", linewidth=0.8)
    ax.set_xlim(0, max(r.ratio for r in shown) * 1.6)  # room for the labels
    ax.invert_yaxis()
    ax.set_xlabel("ratio (green: target met, red: missed, grey: reported)")
    ax.set_title("fsstore vs glance_store 5.7.0 and the machine's limits")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
