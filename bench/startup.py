"""CLI start-up: `bluegreen --help` against `python -c pass`, median of N runs each.

    .venv/bin/python bench/startup.py [runs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], runs: int) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    python = median_seconds([sys.executable, "-c", "pass"], runs)
    help_ = median_seconds([sys.executable, "-m", "bluegreen", "--help"], runs)
    eager = median_seconds([sys.executable, "-c",
                            "import typer, rich, paramiko, httpx, jinja2"], runs)
    print(f"python -c pass                     {python * 1000:7.1f} ms")
    print(f"bluegreen --help                   {help_ * 1000:7.1f} ms  "
          f"(+{(help_ - python) * 1000:.1f} ms; goal: < +150 ms)")
    print(f"importing the five libraries eagerly {eager * 1000:5.1f} ms  "
          f"(+{(eager - python) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
