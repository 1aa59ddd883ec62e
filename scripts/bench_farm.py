"""Samples per second of one sharded HIL run over 1, 2, 3 ... QEMU boards of a local labgrid farm.

    python scripts/bench_farm.py                      # the HIL test model, 240 samples, 1-3 boards
    python scripts/bench_farm.py --model m.tflite --data x.npz --boards 1 2 4 --env qemu-m7

Every run goes the whole farm path: coordinator, exporter, places acquired through labgrid,
raw TCP serial ports, the work queue. QEMU runs with -icount shift=0, so each board is one busy
host core: on a machine with fewer cores than boards the rate stops growing there. A QEMU UART
has no baud limit; on real 115,200-baud boards the link, not the CPU, sets the pace.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="qemu-m4")
    ap.add_argument("--model", type=Path, help=".tflite (default: the HIL test model)")
    ap.add_argument("--data", type=Path, help=".npz with x (default: random inputs)")
    ap.add_argument("--samples", type=int, default=240)
    ap.add_argument("--boards", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3, help="runs per board count (median kept)")
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

    from pipeline.hil.build import build_firmware
    from pipeline.hil.farm import Farm
    from pipeline.hil.lab import qemu_farm
    from pipeline.hil.shard import run_sharded

    with tempfile.TemporaryDirectory(prefix="tinypipe-bench-farm-") as tmp:
        tmp = Path(tmp)
        if args.model:
            model = args.model.read_bytes()
        else:
            sys.path.insert(0, str(REPO / "hil_tests"))
            import tiny_model

            model = tiny_model.make_tflite()
        if args.data:
            with np.load(args.data) as z:
                x = z["x"][:args.samples]
        else:
            from pipeline.artifact import ModelArtifact

            t = ModelArtifact.load(model).inputs[0]
            x = np.random.default_rng(0).integers(-128, 128, (args.samples, *t.shape[1:]),
                                                  dtype=np.int8)
        print(f"building {args.env} firmware", file=sys.stderr)
        elf = build_firmware(args.env, model, out=tmp / "fw")
        rows = []
        for k, n in enumerate(args.boards):
            runs = []
            for r in range(args.repeat):
                with qemu_farm(tmp / f"lab{k}-{r}", args.env, elf, n) as (lab, places), \
                        Farm(places, coordinator=lab.address, env=args.env) as farm:
                    s = run_sharded(args.env, model, farm.targets(), samples=x,
                                    out_dir=tmp / f"out{k}-{r}", batch=args.batch)
                runs.append(s)
            s = sorted(runs, key=lambda s: s["throughput_sps"])[len(runs) // 2]
            rows.append((n, s["samples"], s["wall_seconds"], s["throughput_sps"],
                         min(r["bit_exact"] for r in runs)))
        print(f"{args.env}, {x.shape[1:]} {x.dtype} inputs ({x[0].nbytes} B), batch "
              f"{args.batch}, median of {args.repeat} runs, {os.cpu_count()} host cores, "
              f"load average {os.getloadavg()[0]:.1f}")
        print("| boards | samples | wall s | samples/s | speed-up | bit-exact |")
        print("|---|---|---|---|---|---|")
        base = rows[0][3]
        for n, done, wall, sps, exact in rows:
            print(f"| {n} | {done} | {wall:.2f} | {sps:.1f} | {sps / base:.2f}x | "
                  f"{exact}/{done} |")


if __name__ == "__main__":
    main()
