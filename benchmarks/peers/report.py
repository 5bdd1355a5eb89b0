"""The peers benchmark's one table (Markdown, for the README) and one plot (PNG, matplotlib)."""

from __future__ import annotations

from pathlib import Path

CONCURRENCY = (1, 16, 64)
SERVERS = ("hub native", "hub v2", "hub v2 binary", "BentoML direct", "MLServer 1.7", "BentoML by hand")
WHAT = {
    "hub native": "POST hub /api/v1/models/NAME/predict",
    "hub v2": "POST hub /v2/models/NAME/infer (Open Inference Protocol, JSON)",
    "hub v2 binary": "the same with the binary tensor extension (raw float32 bytes after a JSON header)",
    "BentoML direct": "POST the deployment's own BentoML server /predict (the hub not in the path)",
    "MLServer 1.7": "MLServer with a custom onnxruntime / TorchScript runtime, its defaults",
    "BentoML by hand": "benchmarks/peers/plain_service.py, BentoML 1.4 as its docs show",
}


def _cell(result: dict | None) -> str:
    if not result:
        return "-"
    errors = f", {result['errors']:.0f} errors" if result["errors"] else ""
    return f"{result['rps']:,.0f} ({result['p50_ms']:.1f} / {result['p99_ms']:.1f}){errors}"


def table(models: list[str], results: dict) -> str:
    """| model | server | c=1 | c=16 | c=64 |, each cell 'req/s (p50 / p99 ms)'."""
    head = "| model | server | " + " | ".join(f"c={c}: req/s (p50 / p99 ms)" for c in CONCURRENCY) + " |"
    lines = [head, "|---|---|" + "---:|" * len(CONCURRENCY)]
    for model in models:
        for server in SERVERS:
            cells = [_cell(results.get((model, server, c))) for c in CONCURRENCY]
            lines.append(f"| {model} | {server} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _bars(ax, model: str, results: dict, key: str) -> None:
    width = 0.8 / len(SERVERS)
    for i, server in enumerate(SERVERS):
        values = [results.get((model, server, c), {}).get(key, 0) for c in CONCURRENCY]
        offsets = [x + (i - (len(SERVERS) - 1) / 2) * width for x in range(len(CONCURRENCY))]
        ax.bar(offsets, values, width, label=server)
    ax.set_xticks(range(len(CONCURRENCY)), [f"c={c}" for c in CONCURRENCY])
    ax.grid(axis="y", alpha=0.3)


def plot(models: list[str], results: dict, path: Path, title: str) -> Path:
    """Throughput (top) and p99 latency (bottom, log scale) per model, bars per server."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(models), figsize=(4.6 * len(models) + 1, 7), squeeze=False)
    for col, model in enumerate(models):
        _bars(axes[0][col], model, results, "rps")
        axes[0][col].set_title(model)
        _bars(axes[1][col], model, results, "p99_ms")
        axes[1][col].set_yscale("log")
    axes[0][0].set_ylabel("throughput, req/s")
    axes[1][0].set_ylabel("p99 latency, ms (log)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(SERVERS), frameon=False)
    fig.suptitle(title)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
