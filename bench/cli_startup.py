"""How long `speakerdb --help` takes, against a bare Python start measured in the same run.

    python bench/cli_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def median_seconds(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    runs = ap.parse_args().runs
    bare = median_seconds([sys.executable, "-c", "pass"], runs)
    helped = median_seconds([sys.executable, "-m", "speakerdb", "--help"], runs)
    print(f"python -c pass        {bare * 1000:7.1f} ms (baseline)")
    print(f"speakerdb --help      {helped * 1000:7.1f} ms ({helped / bare:.1f}x baseline; "
          f"target < 300 ms: {'met' if helped < 0.3 else 'NOT met'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
