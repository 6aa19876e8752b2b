"""Which refunds or messages are unfinished, kept in memory for the FerretDB adapter: there every
read scans the whole collection (ADR 0003), so the frequent sweep must not ask the store which
effects are unfinished. The view learns it from what this process writes and reads (claims,
settles, renewals, take-overs), and from a full scan at start and at a long interval, which
finds what another process left unfinished. It holds only unfinished effects: one that gets
a final answer leaves it, so it is bounded by the work in flight, not by what is stored.

What the view holds may be older than the store (another process changed an effect): the
sweep reads the effects the view says are due before it acts on them, and takes them over
under their stored guards, so a stale entry costs a read, never a second effect."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from services.fulfilment.domain.effects import UNFINISHED, Effect, EffectState


@dataclass
class UnfinishedView:
    """Unfinished effects by key, each with the tick of the write or read that put it here."""

    loaded: bool = False
    _known: dict[str, tuple[Effect, int]] = field(default_factory=dict)
    _tick: int = 0

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def note(self, effects: Iterable[Effect]) -> None:
        """Effects as now written or read: an unfinished one is kept, a final one leaves."""
        for effect in effects:
            self._tick += 1
            if effect.status in UNFINISHED:
                self._known[effect.key] = (effect, self._tick)
            else:
                self._known.pop(effect.key, None)

    def forget(self, keys: Iterable[str]) -> None:
        """Keys the store no longer has (retention deleted them)."""
        for key in keys:
            self._known.pop(key, None)

    def scan_started(self) -> int:
        """Call before a full scan's read; give the result to `load`."""
        self._tick += 1
        return self._tick

    def load(self, unfinished: Iterable[Effect], started: int) -> None:
        """What a full scan that began at tick `started` found unfinished. What this process
        wrote or read since stays (it is newer); an entry older than the scan that the scan
        did not find has been finished since, by whoever, and leaves."""
        found: set[str] = set()
        for effect in unfinished:
            found.add(effect.key)
            known = self._known.get(effect.key)
            if known is None or known[1] < started:
                self._known[effect.key] = (effect, started)
        for key in [k for k, (_, tick) in self._known.items()
                    if tick < started and k not in found]:
            del self._known[key]
        self.loaded = True

    def due(self, ready: Callable[[Effect], bool] | None, limit: int) -> list[str]:
        """Up to `limit` (0: all) keys whose effects are `ready`, as the view knows them;
        those waiting longest first."""
        chosen = [effect for effect, _ in self._known.values()
                  if ready is None or ready(effect)]
        chosen.sort(key=_waiting_since)
        return [effect.key for effect in (chosen[:limit] if limit else chosen)]

    def renewed(self, keys: Sequence[str], claim: str | None, now: datetime) -> None:
        """The lease of these claims was extended (those still held by `claim`)."""
        for key in keys:
            known = self._known.get(key)
            if known is not None and known[0].claim == claim and (
                    known[0].status == EffectState.claimed.value):
                self.note([replace(known[0], claimed_at=now)])

    def woken(self, remote: str, now: datetime) -> None:
        """Every effect paused for `remote` is due now."""
        for effect in [e for e, _ in self._known.values()
                       if e.status == EffectState.paused.value and e.remote == remote]:
            self.note([replace(effect, next_attempt_at=now)])


def _waiting_since(effect: Effect) -> datetime:
    if effect.status == EffectState.claimed.value:
        return effect.claimed_at or effect.created_at
    return effect.next_attempt_at or effect.created_at
