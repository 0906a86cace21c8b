"""Mode coverage and wall-clock of the committed toy experiments (PacGAN protocol).

For each data set (``ring``, ``grid``) and seed, runs ``experiments/toy_<data>.yaml`` exactly as committed::

    python -m gan_lightning fit --config experiments/toy_<data>.yaml --seed_everything=S --wandb=offline --run_dir=<tmp>

(what ``make train EXP=toy_<data>`` runs without a W&B account: progress bar and offline W&B run included),
times it, reads ``<run_dir>/metrics.json`` (modes captured, % high quality, reverse KL on 2,500 samples: the
generator's own under ``modes``, ..., and, where the experiment names ``model.refinement``, the refined samples
under ``modes_refined``, ...) and prints a markdown table with a pass/fail against the targets, which judge the
samples the model draws (the refined ones where there is a refinement):

- ring: 8 of 8 modes and >= 97% high quality;
- grid: 25 of 25 modes and >= 97% high quality;
- every run at most 180 s of wall-clock (command start to exit, start-up included).

Runs go one after another (never in parallel, so the timings are comparable). Usage::

    python benchmarks/toy_quality.py                        # ring and grid, seeds 0 1 2 3 4
    python benchmarks/toy_quality.py --data grid --seeds 0  # one run
    python benchmarks/toy_quality.py --set model.ema_decay=0.99   # extra overrides, for tuning only

Exit status 0 when every run passes, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# data -> (modes needed, % high quality needed)
TARGETS = {"ring": (8, 97.0), "grid": (25, 97.0)}
TIME_LIMIT_S = 180.0


def run_one(data: str, seed: int, run_dir: Path, python: str, extra: list[str]) -> dict:
    cmd = [
        python, "-m", "gan_lightning", "fit",
        "--config", f"experiments/toy_{data}.yaml",
        f"--seed_everything={seed}",
        "--wandb=offline",
        f"--run_dir={run_dir}",
        *[f"--{kv}" for kv in extra],
    ]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    row = {"data": data, "seed": seed, "wall_s": wall, "rc": proc.returncode, "cmd": cmd}
    metrics_path = run_dir / "metrics.json"
    if proc.returncode == 0 and metrics_path.exists():
        row.update(json.loads(metrics_path.read_text()))
    else:
        row["error"] = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return row


def judged(row: dict, key: str) -> float:
    """The value the targets judge: of the refined samples when the run refined them, else the generator's own."""
    return row[f"{key}_refined"] if f"{key}_refined" in row else row[key]


def verdict(row: dict) -> tuple[bool, str]:
    if "error" in row:
        return False, f"FAIL (exit {row['rc']})"
    need_modes, need_hq = TARGETS[row["data"]]
    why = []
    if judged(row, "modes") < need_modes:
        why.append(f"modes < {need_modes}")
    if judged(row, "high_quality") < need_hq:
        why.append(f"hq < {need_hq:g}%")
    if row["wall_s"] > TIME_LIMIT_S:
        why.append(f"time > {TIME_LIMIT_S:g}s")
    return (not why), ("pass" if not why else "FAIL: " + ", ".join(why))


def fmt(value: float | None, digits: int) -> str:
    return "inf" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", nargs="+", choices=sorted(TARGETS), default=["ring", "grid"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--python", default=sys.executable, help="interpreter that runs gan_lightning")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="extra config overrides (not the committed experiment; for tuning)")
    parser.add_argument("--keep", default=None, metavar="DIR",
                        help="keep the run directories under DIR (default: a temporary folder, removed)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the rows as JSON")
    args = parser.parse_args(argv)

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="toy_quality_"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    try:
        for data in args.data:
            for seed in args.seeds:
                run_dir = root / f"toy_{data}-seed{seed}"
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # the CLI refuses to overwrite a run directory's config.yaml.
                row = run_one(data, seed, run_dir, args.python, args.set)
                ok, note = verdict(row)
                row["pass"], row["note"] = ok, note
                print(f"# {data} seed {seed}: {note} ({row['wall_s']:.1f} s)", file=sys.stderr, flush=True)
                if "error" in row:
                    print("\n".join("#   " + line for line in row["error"]), file=sys.stderr, flush=True)
                rows.append(row)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)

    example = " ".join(rows[0]["cmd"][1:]).replace(str(root), "<tmp>") if rows else ""
    print(f"Command (per run): python {example}")
    if args.set:
        print(f"Extra overrides (NOT the committed defaults): {' '.join(args.set)}")
    print(f"Targets: ring 8/8 modes, grid 25/25 modes, >= 97% high quality, <= {TIME_LIMIT_S:g} s per run; "
          f"{os.cpu_count()} CPU cores.")
    print()
    print("The model's samples are what the targets judge: where the experiment names a refinement, the refined")
    print("samples (`refined:` columns, metrics.json `*_refined`); the generator's own samples are the plain columns.")
    print()
    print("| data | seed | modes | high quality % | reverse KL | refined: modes | refined: high quality % "
          "| refined: reverse KL | wall-clock s | result |")
    print("|------|-----:|------:|---------------:|-----------:|---------------:|------------------------:"
          "|--------------------:|-------------:|--------|")
    for r in rows:
        n_modes = {"ring": 8, "grid": 25}[r["data"]]
        modes = f"{r['modes']:.0f}/{n_modes}" if "modes" in r else "-"
        hq = fmt(r.get("high_quality"), 2) if "high_quality" in r else "-"
        kl = fmt(r.get("reverse_kl"), 4) if "reverse_kl" in r else "-"
        ref_modes = f"{r['modes_refined']:.0f}/{n_modes}" if "modes_refined" in r else "-"
        ref_hq = fmt(r.get("high_quality_refined"), 2) if "high_quality_refined" in r else "-"
        ref_kl = fmt(r.get("reverse_kl_refined"), 4) if "reverse_kl_refined" in r else "-"
        print(f"| {r['data']} | {r['seed']} | {modes} | {hq} | {kl} | {ref_modes} | {ref_hq} | {ref_kl} "
              f"| {r['wall_s']:.1f} | {r['note']} |")
    passed = sum(r["pass"] for r in rows)
    print()
    print(f"{passed}/{len(rows)} runs pass.")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0 if rows and passed == len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
