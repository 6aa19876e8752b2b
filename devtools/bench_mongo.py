"""Where a service's database time goes: `python -m devtools.bench_mongo OUT SERVICE` runs
`services.SERVICE` with a pymongo command listener and, when the service stops, writes the
count and total time of each database command (per collection) to OUT as JSON. Used by
`python -m devtools bench --profile`."""

from __future__ import annotations

import atexit
import contextlib
import json
import runpy
import sys
import time
from collections import defaultdict
from pathlib import Path

from pymongo import monitoring


class Timings(monitoring.CommandListener):
    def __init__(self) -> None:
        self.open: dict[int, tuple[str, float]] = {}
        self.totals: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])

    def started(self, event: monitoring.CommandStartedEvent) -> None:
        target = event.command.get(event.command_name)
        what = f"{event.command_name} {target}" if isinstance(target, str) else (
            event.command_name)
        self.open[event.request_id] = (what, time.perf_counter())

    def _done(self, request_id: int) -> None:
        what, began = self.open.pop(request_id, ("?", time.perf_counter()))
        entry = self.totals[what]
        entry[0] += 1
        entry[1] += time.perf_counter() - began

    def succeeded(self, event: monitoring.CommandSucceededEvent) -> None:
        self._done(event.request_id)

    def failed(self, event: monitoring.CommandFailedEvent) -> None:
        self._done(event.request_id)


def main() -> None:
    out, service = Path(sys.argv[1]), sys.argv[2]
    timings = Timings()
    monitoring.register(timings)

    def write() -> None:
        ranked = sorted(timings.totals.items(), key=lambda kv: -kv[1][1])
        out.write_text(json.dumps({what: {"calls": int(n), "seconds": round(s, 3)}
                                   for what, (n, s) in ranked}, indent=2) + "\n")

    atexit.register(write)
    sys.argv = [service]
    with contextlib.suppress(KeyboardInterrupt):  # how the bench stops a profiled service
        runpy.run_module(f"services.{service}", run_name="__main__")


if __name__ == "__main__":
    main()
