"""CLI start-up: `bluegreen --help`, and a command whose options are parsed before it stops
(`rollback --yes` with an inventory that does not exist: exit 2, no network), against
`python -c pass`, median of N runs each.

    .venv/bin/python bench/startup.py [runs]
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def median_seconds(argv: list[str], runs: int, *, exit_code: int = 0) -> float:
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        samples.append(time.perf_counter() - started)
        if done.returncode != exit_code:
            sys.exit(f"{' '.join(argv)} exited {done.returncode}, not {exit_code}")
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    python = median_seconds([sys.executable, "-c", "pass"], runs)
    help_ = median_seconds([sys.executable, "-m", "bluegreen", "--help"], runs)
    parsed = median_seconds([sys.executable, "-m", "bluegreen", "-i", "/nonexistent.yml",
                             "rollback", "--yes"], runs, exit_code=2)
    eager = median_seconds([sys.executable, "-c",
                            "import typer, rich, paramiko, httpx, jinja2"], runs)
    print(f"python -c pass                     {python * 1000:7.1f} ms")
    print(f"bluegreen --help                   {help_ * 1000:7.1f} ms  "
          f"(+{(help_ - python) * 1000:.1f} ms; goal: < +150 ms)")
    print(f"bluegreen rollback, options parsed {parsed * 1000:7.1f} ms  "
          f"(+{(parsed - python) * 1000:.1f} ms)")
    print(f"importing the five libraries eagerly {eager * 1000:5.1f} ms  "
          f"(+{(eager - python) * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
