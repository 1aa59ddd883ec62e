"""HIL report files: hil.json (every sample + summary), hil.md and a latency histogram."""

from __future__ import annotations

import json
from pathlib import Path


def _md(summary: dict, device: dict) -> str:
    kind = summary["counter"]
    lat, ms = summary["latency"][kind], summary["latency"].get("ms")
    lines = [
        f"# HIL report: {device.get('env', '?')}",
        "",
        f"- board: {device.get('board', '?')} ({device.get('backend', '?')} backend, "
        f"model {device.get('model_hash', '?')})",
        f"- samples: {summary['samples']} of {summary['requested']}"
        + ("" if summary["complete"] else " (INCOMPLETE: the board was lost)"),
    ]
    if "bit_exact" in summary:
        lines.append(f"- bit-exact vs host TFLM: {summary['bit_exact']}/{summary['samples']} "
                     f"({100 * summary['bit_exact_rate']:.1f} %)")
    if "accuracy" in summary:
        host = summary.get("host_accuracy")
        lines.append(f"- accuracy on device: {100 * summary['accuracy']:.2f} %"
                     + (f" (host: {100 * host:.2f} %)" if host is not None else ""))
    lines += [
        f"- latency ({kind}): mean {lat['mean']:,.0f}, p50 {lat['p50']:,.0f}, "
        f"p99 {lat['p99']:,.0f} (min {lat['min']:,}, max {lat['max']:,})",
        *([f"- latency (ms at {summary['cpu_hz'] / 1e6:g} MHz): mean {ms['mean']:.3f}, "
            f"p50 {ms['p50']:.3f}, p99 {ms['p99']:.3f}"] if ms else []),
        f"- throughput over the link: {summary['throughput_sps']:.1f} samples/s",
    ]
    link = summary.get("link")
    if link:
        use = link["utilisation"]
        lines.append(
            f"- link: {link['bytes_out']:,} B out, {link['bytes_in']:,} B in; "
            f"{100 * link['efficiency']:.1f} % of it inputs and outputs; "
            + (f"{100 * use:.1f} % of the UART's raw rate" if use is not None
               else "emulated link (no baud limit)"))
    if summary.get("boards"):
        lines += _boards_md(summary["boards"], kind)
    if summary.get("confusion_matrix"):
        cm = summary["confusion_matrix"]
        lines += ["", "## Confusion matrix (rows: true, columns: predicted)", "",
                  "| | " + " | ".join(str(i) for i in range(len(cm))) + " |",
                  "|---" * (len(cm) + 1) + "|"]
        lines += [f"| {i} | " + " | ".join(str(v) for v in row) + " |"
                  for i, row in enumerate(cm)]
    return "\n".join(lines) + "\n"


def _boards_md(boards: list[dict], kind: str) -> list[str]:
    """Per-board table of a run sharded over several boards (pipeline.hil.shard)."""
    lines = ["", "## Boards", "",
             f"| board | samples | bit-exact | accuracy | mean {kind} | p99 {kind} | samples/s "
             "| lost |", "|---|---|---|---|---|---|---|---|"]
    for b in boards:
        acc = f"{100 * b['accuracy']:.2f} %" if "accuracy" in b else "-"
        lines.append(f"| {b['name']} | {b['samples']} | {b['bit_exact']} | {acc} "
                     f"| {b['latency']['mean']:,.0f} | {b['latency']['p99']:,.0f} "
                     f"| {b['throughput_sps']:.1f} | {b['lost'] or '-'} |")
    return lines


def _histogram(values: list[int], kind: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(values, bins=min(50, max(1, len(set(values)))))
    ax.set_xlabel(f"{kind} per inference")
    ax.set_ylabel("samples")
    ax.set_title("On-device latency")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_report(out_dir: str | Path, records: list[dict], summary: dict, device: dict) -> Path:
    """Write hil.json, hil.md and latency.png; returns the hil.json path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "hil.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"device": device, "summary": summary, "samples": records},
                              indent=1))
    tmp.replace(path)
    (out / "hil.md").write_text(_md(summary, device))
    values = [r[summary["counter"]] for r in records]
    if values:
        _histogram(values, summary["counter"], out / "latency.png")
    return path
