"""Shared by the speed benchmarks: describe the machine, update one section of ``RESULTS.md``.

Each benchmark owns one ``## `` section of ``benchmarks/RESULTS.md`` and replaces only that one, so
benchmarks run by different people at different times can share the file.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "RESULTS.md"


def machine_description() -> str:
    """``nproc``, CPU model, RAM, Python and the load average when the run started."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (
        f"{os.cpu_count()} cores (nproc), {cpu}, {ram_gib:.0f} GiB RAM, "
        f"Python {platform.python_version()}, load average {load:.1f} at start"
    )


def write_section(title: str, section: str, path: Path = RESULTS_PATH) -> None:
    """Replace (or append) the section headed ``## {title}``, leaving the others alone."""
    heading = f"## {title}"
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmark results\n"
    body = f"{heading}\n\n{section.strip()}\n\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: body, text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    path.write_text(text.rstrip("\n") + "\n", encoding="utf-8")


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile (0..1) of ``values``, interpolated."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=1000, method="inclusive")[max(0, round(share * 1000) - 1)]


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"
