"""The backtest's fast path for generated incidents: a second process draws the incidents and
finds the rules that apply to each while this one settles caps, reviews and tallies."""

from __future__ import annotations

import pickle
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import IO, Any

from services.decision.backtest.generated import Draw, GeneratedIncidents
from services.decision.backtest.simulation import (
    NO_HISTORY,
    Found,
    Tally,
    backtest,
    backtest_found,
    collector_paused,
)
from services.decision.domain.history import CustomerHistory, PastIncident
from services.decision.domain.policy import Policy
from services.decision.fast.engine import applying_rules, rules_read_compensation


def backtest_generated(
    count: int,
    policies: Sequence[Policy],
    *,
    seed: int = 7,
    start: datetime,
    days: int = 30,
    currency: str = "EUR",
    customers: int | None = None,
    progress: Callable[[int], None] | None = None,
    every: int = 1000,
    processes: int = 2,
) -> list[Tally]:
    """`backtest(generate_incidents(count, ...), policies, progress, every)`: the same
    tallies, sooner. With two processes (for enough incidents, and policies whose rules do
    not look at the compensation granted before), a second process draws the incidents and
    finds the rules that apply to each, which needs the customers' earlier incidents but not
    what they were granted; this one builds the incidents again from the draws and settles
    the caps, the reviews and the tallies, in order."""
    generated = GeneratedIncidents(count, seed, start, days, currency, customers)
    if (
        processes < 2
        or count < _WORTH_A_PROCESS
        or any(rules_read_compensation(policy) for policy in policies)
    ):
        return backtest(generated.incidents(), policies, progress, every)
    # A fresh interpreter that imports only what finding rules needs: not a fork (the
    # caller may run threads), and not multiprocessing's spawn, which imports the caller's
    # program again (the whole `amends` command, a second of the child's start).
    finder = subprocess.Popen(
        [sys.executable, "-m", "services.decision.backtest.rules"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert finder.stdin is not None
    assert finder.stdout is not None
    try:
        pickle.dump((generated, list(policies)), finder.stdin)
        finder.stdin.close()
        return backtest_found(_found_elsewhere(Received(finder.stdout), generated), policies,
                         progress, every)
    finally:
        finder.stdout.close()
        if finder.poll() is None:
            finder.terminate()
        finder.wait()


_WORTH_A_PROCESS = 100_000  # fewer incidents take less than starting a process does
_BATCH = 2_000


class Sent:
    """One end of the pipe between the processes: each object pickled onto a stream."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def send(self, obj: object) -> None:
        pickle.dump(obj, self._stream, protocol=pickle.HIGHEST_PROTOCOL)

    def close(self) -> None:
        self._stream.flush()


class Received:
    """The other end: the objects in the order sent; EOFError when the sender is gone."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream

    def recv(self) -> Any:
        return pickle.load(self._stream)  # noqa: S301 -- our own child process writes it


def find_rules(sending: Sent, generated: GeneratedIncidents, policies: list[Policy]) -> None:
    """In the second process of `backtest_generated`: send each incident's draw with the
    rules that apply to it under each policy, in batches, then None."""
    build = generated.builder()
    histories: dict[str, CustomerHistory] = {}  # without the values granted: not known here
    batch: list[tuple[Draw, tuple[tuple[int, ...], ...]]] = []
    with collector_paused():
        for n, draw in enumerate(generated.draws()):
            incident = build(n, draw)
            now, customer = incident.detected_at, incident.customer.id
            history = histories.get(customer, NO_HISTORY)
            found = tuple(applying_rules(incident, history, policy, now) for policy in policies)
            batch.append((draw, found))
            histories[customer] = history.plus(
                PastIncident(incident.incident_id, incident.type, incident.detection, now,
                             order_id=incident.order_id, outage_id=incident.outage_id)
            )
            if len(batch) == _BATCH:
                sending.send(batch)
                batch = []
    sending.send(batch)
    sending.send(None)
    sending.close()


def _found_elsewhere(receiving: Received, generated: GeneratedIncidents) -> Iterator[Found]:
    """The incidents sent by `find_rules`, built again, with the rules found for them."""
    build = generated.builder()
    n = 0
    while True:
        try:
            batch = receiving.recv()
        except EOFError as exc:
            raise RuntimeError("the process finding the backtest's rules stopped") from exc
        if batch is None:
            return
        for draw, applying in batch:
            yield build(n, draw), applying
            n += 1
