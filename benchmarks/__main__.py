"""`make bench`: run every benchmark and print one table; `python -m benchmarks NAME...` runs some."""

from __future__ import annotations

import os
import platform
import sys

from benchmarks import (
    batching,
    budget,
    catalog,
    containers,
    datasets,
    direct,
    direct_cost,
    direct_inplace,
    drift,
    lineage,
    peers,
    predlog,
    publish,
    scorecard,
    serving,
    shadow,
    soak,
)

BENCHMARKS = {
    "predlog": predlog.run,
    "serving": serving.run,
    "budget": budget.run,
    "direct": direct.run,
    "directcost": direct_cost.run,
    "directinplace": direct_inplace.run,
    "containers": containers.run,
    "versions": containers.run_versions,
    "drift": drift.run,
    "scorecard": scorecard.run,
    "catalog": catalog.run,
    "publish": publish.run,
    "soak": soak.run,
    "peers": peers.run,
    "batching": batching.run,
    "datasets": datasets.run,
    "shadow": shadow.run,
    "lineage": lineage.run,
}


def _fmt(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def _chosen(names: list[str]) -> list[str]:
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        sys.exit(f"No benchmark named {', '.join(unknown)}; choose from {', '.join(BENCHMARKS)}.")
    return names or list(BENCHMARKS)


def main(argv: list[str] | None = None) -> None:
    names = _chosen(sys.argv[1:] if argv is None else argv)
    rows = [r for name in names for r in BENCHMARKS[name]()]
    width = max(len(r["name"]) for r in rows)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'benchmark'.ljust(width)}  {'value':>14}  {'unit':<6} target")
    print(f"{'-' * width}  {'-' * 14}  {'-' * 6} ------")
    for r in rows:
        print(f"{r['name'].ljust(width)}  {_fmt(r['value']):>14}  {r['unit']:<6} {r['target'] or ''}")


if __name__ == "__main__":
    main()
