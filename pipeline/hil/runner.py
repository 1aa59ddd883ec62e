"""Stream a data set through a board, compare every output with the host TFLM interpreter."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.artifact import ModelArtifact
from pipeline.boards import BoardSpec, board
from pipeline.emulator import Emulator, make_emulator
from pipeline.errors import DataError, DeviceError
from pipeline.hil.build import build_firmware, pio_env, pio_executable, project_of
from pipeline.hil.devices import find_port
from pipeline.hil.link import Link
from pipeline.hil.report import write_report
from pipeline.hil.reset import Tap, for_board, reset_and_wait
from pipeline.hil.stats import link_usage, summarize

# progress(done, total, message)
Progress = Callable[[int, int, str], None]


def load_npz(path: str | Path) -> tuple[np.ndarray, np.ndarray | None]:
    """`x` (input tensors, model dtype) and optional `y` (labels) from an .npz."""
    try:
        with np.load(path) as z:
            if "x" not in z.files:
                raise DataError(f"{path}: no array 'x' (found: {', '.join(z.files)})")
            return z["x"], (z["y"] if "y" in z.files else None)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read npz ({e})") from None


def emulator_kind(spec: BoardSpec, emulator: str | None = None) -> str | None:
    """The emulator a run uses: the one asked for, else the board's own (None: real board)."""
    return emulator or spec.default_emulator


def flash_firmware(env: str, elf: str | Path, port: str | None = None,
                   emulator: str | None = None) -> Emulator | None:
    """Put `elf` on the board, or start the emulator that runs it (returned started; a
    context manager). `emulator` ("qemu", "renode") overrides the board's own."""
    spec = board(env)
    kind = emulator_kind(spec, emulator)
    if kind is not None:
        return make_emulator(spec, elf, kind).start()
    build_dir = Path(elf).parent.parent  # <out>/pio/<env>/firmware.elf, as build() leaves it
    cmd = [pio_executable(), "run", "-e", env, "-t", "nobuild", "-t", "upload", "-d",
           str(project_of(elf))]
    if port:
        cmd += ["--upload-port", port]
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          env=pio_env({"PLATFORMIO_BUILD_DIR": str(build_dir)}))
    if proc.returncode != 0:
        last = (proc.stdout.strip().splitlines() or ["no output"])[-1]
        raise DeviceError(f"flashing {env} failed: {last}")
    return None


def _check_device(link: Link, spec: BoardSpec, want_hash: str, x: np.ndarray) -> None:
    info = link.hello_info
    assert info is not None
    if info.model_status != 0:
        raise DeviceError(f"{link.url}: the model failed to initialise on the board "
                          f"(status {info.model_status}); is the arena big enough?")
    if info.model_hash != want_hash:
        raise DeviceError(f"{link.url}: board runs model {info.model_hash}, expected {want_hash}; "
                          f"flash it: tinypipe flash --env {spec.env} --model ...")
    t = info.inputs[0]
    if x.dtype != np.dtype(t.np_dtype) or x[0].size * x.itemsize != t.bytes:
        raise DataError(f"samples are {x.dtype} {x.shape[1:]}, the board's input is "
                        f"{np.dtype(t.np_dtype).name} {list(t.shape)}")


def stream(link: Link, x: np.ndarray, counter: str, progress: Progress | None = None,
           records: list[dict] | None = None, labels: np.ndarray | None = None) -> list[dict]:
    """Load, infer and read back every sample; appends to and returns `records`."""
    records = [] if records is None else records
    for i in range(len(records), len(x)):
        link.load_input(0, np.ascontiguousarray(x[i]).tobytes())
        res, outs = link.infer(1)
        out0 = outs[0]
        rec = {"index": i, "output": out0.ravel().tolist(), counter: int(res.counters[0]),
               "label": None if labels is None else int(labels[i]),
               "prediction": int(np.argmax(out0.ravel()))}
        if len(outs) > 1:
            rec["outputs"] = [o.ravel().tolist() for o in outs]
        records.append(rec)
        if progress:
            progress(i + 1, len(x), "")
    return records


def run_hil(env: str, model: ModelArtifact | bytes | str | Path,
            data: str | Path | None = None, port: str | None = None, limit: int | None = None,
            out_dir: str | Path = "runs/hil", flash: bool = True, *,
            samples: np.ndarray | None = None, labels: np.ndarray | None = None,
            backend: str = "aot", elf: str | Path | None = None,
            progress: Progress | None = None, build_progress: Callable[[str], None] | None = None,
            timeout: float | None = None, emulator: str | None = None,
            reference: np.ndarray | None = None, model_dir: str | Path | None = None,
            reset: str | None = None, project: str | Path | None = None) -> dict:
    """Run a data set on a board (or its emulator), write DIR/hil.json, hil.md, latency.png.

    `data` is an .npz with `x` (inputs in the model's dtype/shape) and optional `y`; callers
    with their own preprocessing pass `samples` (and `labels`) instead. `reference` is the host
    TFLM's outputs for those samples when already computed (else they are computed here);
    `model_dir` an exported C folder to build from when it matches the model. `emulator`
    ("qemu", "renode") overrides the board's own emulator; `reset` the board's reset strategy
    (pipeline.hil.reset). `project` is a `tinypipe init` project to build in (the model is
    exported into its model/). A board lost mid-run (or Ctrl-C) still leaves a report of the
    samples done, then the error is raised.
    """
    from pipeline.tflm import run_tflm

    spec = board(env)
    art = ModelArtifact.load(model)
    kind = emulator_kind(spec, emulator)
    if kind is not None and kind not in spec.emulators:
        raise DeviceError(f"{env} does not run under {kind} (emulators: "
                          f"{', '.join(spec.emulators) or 'none'})")
    if kind is not None and flash and port is None:
        make_emulator(spec, "unbuilt.elf", kind).check_installed()  # before the slow parts
    if samples is None:
        if data is None:
            raise DataError("give a data set (.npz with x[, y]) or samples")
        samples, labels = load_npz(data)
    x = np.asarray(samples)
    if limit is not None:
        x = x[:limit]
        labels = None if labels is None else np.asarray(labels)[:limit]
    if len(x) == 0:
        raise DataError("no samples to run")
    if port is None and not flash:  # fail before the slow parts
        if kind is not None:
            raise DeviceError(f"{env} runs under {kind}: flash it (drop --no-flash) or pass "
                              "--port socket://127.0.0.1:PORT of a running emulator")
        port = find_port(env)
    say = build_progress or (lambda _m: None)
    if reference is None or len(reference) != len(x):
        say("host reference (TFLM)")
        reference = run_tflm(art, [x]).outputs[0]

    records: list[dict] = []
    device: dict = {"env": env}
    with ExitStack() as stack:
        url = port
        if flash:
            fw = Path(elf) if elf else build_firmware(
                env, art, backend=backend, progress=say, model_dir=model_dir, project=project,
                out=None if project is not None else Path(out_dir) / "firmware")
            say(f"flashing {env}" if kind is None else f"starting {kind} ({env})")
            emu = flash_firmware(env, fw, port, emulator)
            if emu is not None:
                stack.enter_context(emu)
                url = emu.url
        if url is None:
            url = find_port(env)
        tap = Tap()
        link = stack.enter_context(Link(url, baud=spec.baud, timeout=timeout or spec.timeout,
                                        open_fn=tap.open).open())
        if spec.boot_wait:
            time.sleep(spec.boot_wait)
        reset_and_wait(link, for_board(spec, reset), max(10.0, spec.boot_wait + 5.0), tap)
        info = link.hello(timeout=max(2.0, timeout or spec.timeout))
        device.update(board=info.board, backend=info.backend, model_hash=info.model_hash,
                      cpu_hz=info.cpu_hz, arena_bytes=info.arena_bytes,
                      counter=info.counter_kind,
                      inputs=[t.to_dict() for t in info.inputs],
                      outputs=[t.to_dict() for t in info.outputs])
        _check_device(link, spec, art.hash, x)
        if flash and not elf and info.backend.split("-")[0].split("+")[0] != backend:
            raise DeviceError(f"{link.url}: board runs the {info.backend} backend, built for "
                              f"{backend}")
        if spec.fast_baud and info.max_baud >= spec.fast_baud:
            link.set_baud(spec.fast_baud)
        t0 = time.monotonic()
        wire0 = (link.stats.bytes_out, link.stats.bytes_in)
        lost: DeviceError | None = None
        stopped = False
        try:
            stream(link, x, info.counter_kind, progress, records, labels)
        except DeviceError as e:
            lost = e
        except KeyboardInterrupt:
            stopped = True
        wall = time.monotonic() - t0
        if lost is None and not stopped:
            device["device_stats"] = link.stats_device()
        device["link_stats"] = asdict(link.stats)
        summary = summarize(records, reference, labels, info.counter_kind, info.cpu_hz, wall,
                            len(x))
        real_uart = not str(link.url).startswith(("socket://", "rfc2217://", "loop://"))
        summary["link"] = link_usage(
            link.stats.bytes_out - wire0[0], link.stats.bytes_in - wire0[1],
            len(records) * x[0].nbytes, len(records) * sum(t.bytes for t in info.outputs),
            wall, link.baud if real_uart else None)
        write_report(out_dir, records, summary, device)
        if stopped:
            raise KeyboardInterrupt
        if lost is not None:
            raise DeviceError(f"{lost} ({len(records)}/{len(x)} samples done; partial report "
                              f"in {out_dir})")
    return summary


flash = flash_firmware
