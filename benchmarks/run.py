"""``make bench``: the project's benchmarks, each printing side-by-side ratios measured in one run.

    .venv/bin/python benchmarks/run.py                 # the quick ones: step speed, DDP throughput
    .venv/bin/python benchmarks/run.py toy_quality     # by name (toy_quality takes ~20 minutes on 2 cores)
    .venv/bin/python benchmarks/run.py precision_throughput   # fp32 / bf16 / compiled; made for a GPU

Quality benchmarks that need a trained checkpoint (cgan_quality.py, spatial_quality.py) are run directly.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
QUICK = ["step_speed", "ddp_throughput"]
ALL = QUICK + ["toy_quality", "precision_throughput"]


def main(argv: list[str]) -> int:
    names = argv or QUICK
    unknown = [n for n in names if n not in ALL]
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; choose from {ALL}", file=sys.stderr)
        return 2
    failed = 0
    for name in names:
        print(f"\n## {name}\n", flush=True)
        failed |= subprocess.call([sys.executable, str(HERE / f"{name}.py")]) != 0
    return int(failed)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
