"""Start a labgrid farm of QEMU boards on this machine and keep it up until Ctrl-C.

    python scripts/local_farm.py --env qemu-m4 --boards 2 --elf build/.../program.elf

prints the coordinator address and the places; then, in another shell:

    LG_COORDINATOR=127.0.0.1:PORT tinypipe hil --env qemu-m4 --place qemu-m4-0 \\
        --place qemu-m4-1 --no-flash --model m.tflite --data x.npz --out out
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from pipeline.hil.lab import qemu_farm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="qemu-m4")
    ap.add_argument("--boards", type=int, default=2)
    ap.add_argument("--elf", type=Path, required=True, help="firmware from `tinypipe build`")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tinypipe-lab-") as tmp, \
            qemu_farm(Path(tmp), args.env, args.elf, args.boards) as (lab, places):
        print(f"LG_COORDINATOR={lab.address}")
        print("places:", " ".join(places))
        try:
            while True:
                time.sleep(1)
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    main()
