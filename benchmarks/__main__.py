"""`make bench`: run every benchmark and print one table."""

from __future__ import annotations

import os
import platform

from benchmarks import containers, predlog, serving


def _fmt(value) -> str:
    return f"{value:,.2f}" if isinstance(value, float) else str(value)


def main() -> None:
    rows = [*predlog.run(), *serving.run(), *containers.run()]
    width = max(len(r["name"]) for r in rows)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"{'benchmark'.ljust(width)}  {'value':>14}  {'unit':<6} target")
    print(f"{'-' * width}  {'-' * 14}  {'-' * 6} ------")
    for r in rows:
        print(f"{r['name'].ljust(width)}  {_fmt(r['value']):>14}  {r['unit']:<6} {r['target'] or ''}")


if __name__ == "__main__":
    main()
