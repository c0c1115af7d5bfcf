"""Write an evaluation's outputs: metrics.json, predictions.jsonl, report.md and plot.png.

metrics.json is written last: its presence marks a finished evaluation (what the eval cache checks).
"""

from __future__ import annotations

import json
from typing import Any

from lloco_core.plotting import png_figure
from lloco_core.store.storage import Store

SYSTEM_LABELS = {
    "no_context": "No context",
    "truncated": "Truncated raw context",
    "retrieval": "Raw-text top-k retrieval",
    "lloco_base": "LLoCO, no adapter",
    "lloco": "LLoCO + adapter",
}

MARKERS = ("o", "s", "D", "^", "v", "P", "X")


def markdown_table(summary: dict[str, Any]) -> str:
    """One row per system: score, mean prompt tokens, compression ratio, latency."""
    metric_names = sorted({m for s in summary["systems"].values() for m in s["metrics"]})
    head = ["system", "score", *[m for m in metric_names], "mean prompt tokens", "compression ratio", "mean latency (s)", "examples"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, s in summary["systems"].items():
        ratio = f"{s['compression_ratio']:.2f}x" if s["compression_ratio"] else "-"
        cells = [SYSTEM_LABELS.get(name, name), f"{s['score']:.4f}", *[f"{s['metrics'].get(m, 0.0):.4f}" for m in metric_names],
                 f"{s['mean_prompt_tokens']:.1f}", ratio, f"{s['mean_latency_s']:.4f}", str(s["examples"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(summary: dict[str, Any]) -> str:
    skipped = "".join(f"\n- `{k}` skipped: {v}" for k, v in summary.get("skipped_systems", {}).items())
    return f"""# Evaluation `{summary['eval_key']}`

Corpus `{summary['corpus']}`, eval set `{summary['eval_set']}` ({summary['examples']} examples), model `{summary['model']}`,
adapter `{summary['adapter_key']}`, encoder `{summary['encoder_key']}`.

{markdown_table(summary)}

- score: the mean of each example's own metric (accuracy on the option letter, QA-F1, HotpotQA F1, ROUGE-L).
- ROUGE: {summary['rouge_library']}.
- prompt tokens: decoder positions read (summary vectors + prompt tokens for LLoCO, raw tokens otherwise).
- compression ratio: full raw document + prompt tokens / the system's prompt tokens.
- latency: wall time of the generation batch (prefill + up to {summary['settings']['max_new_tokens']} new tokens, batch size {summary['batch_size']}).{skipped}
"""


def render_plot(summary: dict[str, Any], rows: list[dict[str, Any]]) -> bytes:
    """Score against mean prompt tokens, one point per system (examples faint behind), as PNG.

    Systems often share a point (no context and a retrieval that kept nothing; LLoCO with and
    without adapter), so each has its own marker shape and the markers shrink in drawing order:
    coinciding points nest inside each other as open outlines instead of hiding one another."""
    png: list[bytes] = []
    with png_figure((6.4, 4.2), 110, png) as ax:
        for i, (name, s) in enumerate(summary["systems"].items()):
            color = f"C{i}"
            mine = [r for r in rows if r["system"] == name]
            ax.scatter([r["prompt_tokens"] for r in mine], [r["score"] for r in mine], color=color, alpha=0.15, s=10, marker=MARKERS[i % len(MARKERS)])
            label = f"{SYSTEM_LABELS.get(name, name)} ({s['score']:.2f})"
            ax.scatter([s["mean_prompt_tokens"]], [s["score"]], s=max(30, 280 - 65 * i), marker=MARKERS[i % len(MARKERS)], facecolors="none", edgecolors=color, linewidths=2, label=label, zorder=3 + i)
        ax.set_xscale("log")
        ax.set_xlabel("prompt tokens (decoder positions)")
        ax.set_ylabel("score")
        ax.set_title(f"{summary['corpus']}: score vs prompt tokens")
        ax.legend(fontsize=8)
    return png[0]


def write_report(store: Store, folder: str, summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    store.write_bytes(f"{folder}/predictions.jsonl", "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows).encode())
    store.write_bytes(f"{folder}/report.md", render_markdown(summary).encode())
    store.write_bytes(f"{folder}/plot.png", render_plot(summary, rows))
    store.write_json(f"{folder}/metrics.json", summary)
