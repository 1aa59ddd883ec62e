"""Statistics of a HIL run: agreement with the host, accuracy, confusion matrix, latency."""

from __future__ import annotations

import numpy as np


def latency_stats(values: list[int] | np.ndarray) -> dict:
    """Mean, p50, p99, min, max of per-sample counter values (empty -> zeros)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": 0.0, "p50": 0.0, "p99": 0.0, "min": 0, "max": 0, "std": 0.0}
    return {"mean": float(v.mean()), "p50": float(np.percentile(v, 50)),
            "p99": float(np.percentile(v, 99)), "min": int(v.min()), "max": int(v.max()),
            "std": float(v.std())}


def confusion_matrix(labels: np.ndarray, preds: np.ndarray, num_classes: int) -> list[list[int]]:
    """Rows = true class, columns = predicted class."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for t, p in zip(labels, preds, strict=True):
        if 0 <= t < num_classes and 0 <= p < num_classes:
            cm[int(t), int(p)] += 1
    return cm.tolist()


def to_ms(value: float, kind: str, cpu_hz: int) -> float:
    """Cycles or microseconds -> milliseconds. Instruction counts (emulators) have no time."""
    if kind == "micros":
        return value / 1000.0
    if kind != "cycles":
        raise ValueError(f"{kind} are not a time; report them as they are")
    return value / cpu_hz * 1000.0 if cpu_hz else 0.0


def summarize(records: list[dict], reference: np.ndarray | None, labels: np.ndarray | None,
              counter_kind: str, cpu_hz: int, wall_s: float, total: int) -> dict:
    """Summary dict for hil.json from per-sample records (index, output, counter, prediction)."""
    n = len(records)
    idx = np.array([r["index"] for r in records], dtype=np.int64)
    preds = np.array([r["prediction"] for r in records], dtype=np.int64)
    counters = [r[counter_kind] for r in records]
    out: dict = {"samples": n, "requested": total, "complete": n == total,
                 "counter": counter_kind, "cpu_hz": cpu_hz}
    if reference is not None:
        same = [bool(np.array_equal(np.asarray(r["output"]).ravel(),
                                    np.asarray(reference[r["index"]]).ravel()))
                for r in records]
        out["bit_exact"] = int(sum(same))
        out["bit_exact_rate"] = sum(same) / n if n else 0.0
        out["mismatched_indices"] = [int(i) for i, ok in zip(idx, same, strict=True) if not ok]
        host_preds = np.array([int(np.argmax(np.asarray(reference[i]).ravel())) for i in idx],
                              dtype=np.int64)
        out["agreement_top1"] = float(np.mean(host_preds == preds)) if n else 0.0
    if labels is not None and n:
        y = np.asarray(labels)[idx].astype(np.int64)
        num_classes = int(max(y.max(), preds.max()) + 1)
        if reference is not None:
            num_classes = max(num_classes, int(np.asarray(reference[0]).size))
        out["accuracy"] = float(np.mean(preds == y))
        if reference is not None:
            out["host_accuracy"] = float(np.mean(host_preds == y))
        out["confusion_matrix"] = confusion_matrix(y, preds, num_classes)
    lat = latency_stats(counters)
    out["latency"] = {counter_kind: lat}
    if counter_kind in ("cycles", "micros"):  # an emulator's instruction count is not a time
        out["latency"]["ms"] = {k: to_ms(lat[k], counter_kind, cpu_hz)
                                for k in ("mean", "p50", "p99", "min", "max")}
    out["wall_seconds"] = wall_s
    out["throughput_sps"] = n / wall_s if wall_s > 0 else 0.0
    return out


def link_usage(bytes_out: int, bytes_in: int, payload_out: int, payload_in: int, wall_s: float,
               baud: int | None) -> dict:
    """How well the stream used the link.

    efficiency: input + output bytes over all bytes on the wire (framing, CRCs, HELLO, resends).
    utilisation: the busier direction's wire bytes per second over the UART's raw rate
    (baud / 10 for 8N1); None for an emulated link (a socket has no baud limit)."""
    wire = bytes_out + bytes_in
    out = {"bytes_out": bytes_out, "bytes_in": bytes_in, "payload_bytes": payload_out + payload_in,
           "efficiency": (payload_out + payload_in) / wire if wire else 0.0,
           "wire_bytes_per_s": wire / wall_s if wall_s > 0 else 0.0, "utilisation": None}
    if baud and wall_s > 0:
        out["utilisation"] = max(bytes_out, bytes_in) / wall_s / (baud / 10)
    return out
