"""The CPU each process of a bench run used, read from /proc (Linux): what each hop, the
broker and the database cost per incident, so a change shows where it saved or spent."""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

PROC = Path("/proc")
TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(path: Path) -> tuple[int, float] | None:
    """(session id, CPU seconds in user and system mode) of one /proc/PID/stat file."""
    try:
        text = path.read_text()
    except OSError:  # gone, or not Linux
        return None
    # The command name is in parentheses and may hold spaces: the fields follow the last ")".
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[3]), (int(fields[11]) + int(fields[12])) / TICKS


def process_cpu(pid: int) -> float | None:
    found = _stat(PROC / str(pid) / "stat")
    return None if found is None else found[1]


def session_cpu(session: int) -> float | None:
    """The CPU of every live process of a session: the stack starts each component in its own
    session, and a launcher may run the real server as its child."""
    total, seen = 0.0, False
    for entry in PROC.glob("[0-9]*/stat"):
        found = _stat(entry)
        if found is not None and found[0] == session:
            total, seen = total + found[1], True
    return total if seen else None


@dataclass(frozen=True)
class Meter:
    """Reads the CPU seconds used so far by the named processes and sessions, and by this
    process (the bench's own producer and watchers)."""

    pids: Mapping[str, int] = field(default_factory=dict)
    sessions: Mapping[str, int] = field(default_factory=dict)

    def read(self) -> dict[str, float]:
        used: dict[str, float] = {"bench": time.process_time()}
        for name, pid in self.pids.items():
            if (seconds := process_cpu(pid)) is not None:
                used[name] = seconds
        for name, session in self.sessions.items():
            if (seconds := session_cpu(session)) is not None:
                used[name] = seconds
        return used


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds used between two readings, by the processes present in both."""
    return {name: round(after[name] - before[name], 3) for name in after if name in before}
