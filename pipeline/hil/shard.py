"""One test set over several boards at once: a work queue of sample batches.

Every board first handshakes and shows the expected model hash; only then does any sample go
out. Each board then pulls the next batch, streams it and pulls again. A board that is lost
mid-run (unplugged, QEMU killed) puts the samples it had not finished back at the front of the
queue, so the boards that are left do them; at the end every sample is in the report exactly
once. If every board is lost, or on Ctrl-C, the samples done so far are kept as a partial report
and the error is raised, as `run_hil` does for one board.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from pipeline.artifact import ModelArtifact
from pipeline.boards import board
from pipeline.errors import DataError, DeviceError
from pipeline.hil import reset as R
from pipeline.hil.link import Link
from pipeline.hil.report import write_report
from pipeline.hil.runner import load_npz, stream
from pipeline.hil.stats import latency_stats, link_usage, summarize

Progress = Callable[[int, int, str], None]


@dataclass
class Target:
    """One board taking part in a sharded run: a name for the report and where it answers."""

    name: str                 # labgrid place, or the port itself
    url: str                  # anything pyserial opens: /dev/tty*, socket://, rfc2217://
    reset: str | None = None  # strategy override (default: the env's)
    usb_id: tuple[int, int] | None = None


@dataclass
class _Worker:
    target: Target
    link: Link | None = None
    tap: R.Tap = field(default_factory=R.Tap)
    done: int = 0
    wall: float = 0.0
    lost: str | None = None


def _connect(w: _Worker, env: str, want_hash: str, sample_bytes: int, dtype: np.dtype,
             reset: str | None, timeout: float | None) -> None:
    """Open, reset, handshake and check one board (raises DeviceError/DataError)."""
    spec = board(env)
    t = w.target
    w.link = Link(t.url, baud=spec.baud, timeout=timeout or spec.timeout, open_fn=w.tap.open)
    w.link.open()
    strat = R.for_board(spec, reset or t.reset, t.usb_id)
    R.reset_and_wait(w.link, strat, timeout=max(10.0, spec.boot_wait + 5.0), tap=w.tap)
    info = w.link.hello(timeout=max(2.0, timeout or spec.timeout))
    if info.model_status != 0:
        raise DeviceError(f"{t.name} ({t.url}): the model failed to initialise on the board "
                          f"(status {info.model_status})")
    if info.model_hash != want_hash:
        raise DeviceError(f"{t.name} ({t.url}): board runs model {info.model_hash}, expected "
                          f"{want_hash}; flash it (drop --no-flash)")
    inp = info.inputs[0]
    if dtype != np.dtype(inp.np_dtype) or sample_bytes != inp.bytes:
        raise DataError(f"{t.name}: samples are {dtype} of {sample_bytes} bytes, the board's "
                        f"input is {np.dtype(inp.np_dtype).name} {list(inp.shape)}")


class _Queue:
    """Batches of sample indices; lost batches go back to the front."""

    def __init__(self, n: int, batch: int) -> None:
        self.todo = deque(list(range(i, min(i + batch, n))) for i in range(0, n, batch))
        self.cv = threading.Condition()
        self.busy = 0
        self.stop = False

    def take(self) -> list[int] | None:
        """The next batch; None when all is done (or stopping). Waits while others may fail."""
        with self.cv:
            while not self.stop:
                if self.todo:
                    self.busy += 1
                    return self.todo.popleft()
                if self.busy == 0:
                    return None
                self.cv.wait(0.2)
            return None

    def finish(self, rest: list[int]) -> None:
        """A batch is over; `rest` are the indices not done (requeued first)."""
        with self.cv:
            self.busy -= 1
            if rest:
                self.todo.appendleft(rest)
            self.cv.notify_all()

    def halt(self) -> None:
        with self.cv:
            self.stop = True
            self.cv.notify_all()


def _work(w: _Worker, q: _Queue, x: np.ndarray, labels: np.ndarray | None, counter: str,
          results: dict[int, dict], lock: threading.Lock, tick: Callable[[], None]) -> None:
    assert w.link is not None
    while (idx := q.take()) is not None:
        recs: list[dict] = []
        t0 = time.monotonic()
        try:
            for i in idx:  # one sample per stream() call: a Ctrl-C stops between samples
                if q.stop:
                    break
                rec = stream(w.link, x[i:i + 1], counter,
                             labels=None if labels is None else labels[i:i + 1])[0]
                rec["index"], rec["board"] = i, w.target.name
                recs.append(rec)
                with lock:
                    if i in results:  # cannot happen: a batch belongs to one board
                        raise AssertionError(f"sample {i} done twice")
                    results[i] = rec
                tick()
        except DeviceError as e:
            w.lost = str(e)
        finally:
            w.wall += time.monotonic() - t0
            w.done += len(recs)
            q.finish(idx[len(recs):])
        if w.lost:
            return


def _per_board(workers: list[_Worker], records: list[dict], reference: np.ndarray,
               labels: np.ndarray | None, counter: str) -> list[dict]:
    out = []
    for w in workers:
        mine = [r for r in records if r["board"] == w.target.name]
        same = sum(np.array_equal(np.asarray(r["output"]).ravel(),
                                  np.asarray(reference[r["index"]]).ravel()) for r in mine)
        row = {"name": w.target.name, "url": w.target.url, "samples": len(mine),
               "bit_exact": int(same), "latency": latency_stats([r[counter] for r in mine]),
               "throughput_sps": len(mine) / w.wall if w.wall > 0 else 0.0, "lost": w.lost}
        if labels is not None and mine:
            row["accuracy"] = float(np.mean([r["prediction"] == int(labels[r["index"]])
                                             for r in mine]))
        out.append(row)
    return out


def run_sharded(env: str, model: bytes | str | Path, targets: list[Target],
                data: str | Path | None = None, limit: int | None = None,
                out_dir: str | Path = "runs/hil", *, samples: np.ndarray | None = None,
                labels: np.ndarray | None = None, batch: int = 4, reset: str | None = None,
                progress: Progress | None = None, say: Callable[[str], None] | None = None,
                timeout: float | None = None) -> dict:
    """Spread a data set over `targets` (boards already running the model's firmware).

    Writes DIR/hil.json (samples in index order, each with its `board`), hil.md (with a
    per-board table) and latency.png; returns the summary. `batch` samples are handed out at
    a time; `reset` overrides every board's reset strategy.
    """
    from pipeline.tflm import run_tflm

    if not targets:
        raise DeviceError("no boards to run on")
    names = [t.name for t in targets]
    if len(set(names)) != len(names):
        raise DeviceError(f"the same board twice: {', '.join(names)}")
    if batch < 1:
        raise DataError(f"batch must be at least 1 (got {batch})")
    art = ModelArtifact.load(model)
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
    say = say or (lambda _m: None)
    say("host reference (TFLM)")
    reference = run_tflm(art, [x]).outputs[0]
    want = art.hash

    workers = [_Worker(t) for t in targets]
    try:
        say(f"handshake with {len(workers)} boards")
        errors: list[BaseException | None] = [None] * len(workers)

        def connect(k: int) -> None:
            try:
                _connect(workers[k], env, want, x[0].nbytes, x.dtype, reset, timeout)
            except BaseException as e:  # noqa: BLE001 - re-raised below, in this thread
                errors[k] = e

        threads = [threading.Thread(target=connect, args=(k,), daemon=True)
                   for k in range(len(workers))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        for e in errors:  # every board checked before any sample is sent
            if e is not None:
                raise e
        return _stream_all(env, workers, x, labels, reference, batch, out_dir, progress)
    finally:
        for w in workers:
            if w.link is not None:
                w.link.close()


def _stream_all(env: str, workers: list[_Worker], x: np.ndarray, labels: np.ndarray | None,
                reference: np.ndarray, batch: int, out_dir: str | Path,
                progress: Progress | None) -> dict:
    info = workers[0].link.hello_info
    counter = info.counter_kind
    q = _Queue(len(x), batch)
    results: dict[int, dict] = {}
    lock = threading.Lock()

    def tick() -> None:
        if progress:
            progress(len(results), len(x), "")

    t0 = time.monotonic()
    threads = [threading.Thread(target=_work, args=(w, q, x, labels, counter, results, lock,
                                                    tick), daemon=True) for w in workers]
    for th in threads:
        th.start()
    stopped = False
    try:
        for th in threads:
            while th.is_alive():
                th.join(0.2)
    except KeyboardInterrupt:
        stopped = True
        q.halt()
        for th in threads:
            th.join(30)
    wall = time.monotonic() - t0
    records = [results[i] for i in sorted(results)]
    summary = summarize(records, reference, labels, counter, info.cpu_hz, wall, len(x))
    summary["boards"] = _per_board(workers, records, reference, labels, counter)
    # all links together; no UART utilisation: several links share the wall time
    summary["link"] = link_usage(
        sum(w.link.stats.bytes_out for w in workers), sum(w.link.stats.bytes_in for w in workers),
        len(records) * x[0].nbytes, len(records) * sum(t.bytes for t in info.outputs), wall, None)
    device = {"env": env, "board": info.board, "backend": info.backend,
              "model_hash": info.model_hash, "cpu_hz": info.cpu_hz,
              "arena_bytes": info.arena_bytes, "counter": counter,
              "inputs": [t.to_dict() for t in info.inputs],
              "outputs": [t.to_dict() for t in info.outputs],
              "boards": [{"name": w.target.name, "url": w.target.url,
                          "board": w.link.hello_info.board, "lost": w.lost,
                          "link_stats": asdict(w.link.stats)} for w in workers]}
    write_report(out_dir, records, summary, device)
    if stopped:
        raise KeyboardInterrupt
    if len(records) < len(x):
        lost = "; ".join(w.lost for w in workers if w.lost) or "stopped"
        raise DeviceError(f"all {len(workers)} boards lost ({lost}); {len(records)}/{len(x)} "
                          f"samples done; partial report in {out_dir}")
    return summary
