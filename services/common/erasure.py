"""Erasing one customer's personal data from a service's own stores and dead letters.

Personal data (e-mail, phone, webhook URL, names, addresses, free text such as ticket text,
notes, reasons and message bodies) is removed; every record is kept, with the customer's id
replaced by a pseudonym: an HMAC of the id under a key every service shares, so that the
money records of one customer still belong together (budget and ledgers still add up) and
nobody without the key can tell whose they were.

The scrubbing is generic on purpose: a new field holding a contact detail must not escape
erasure because nobody listed it here. `Scrub` walks a record (and the JSON text inside it)
and scrubs by field name; the stores' adapter (services/common/adapters/erasure.py) finds the
customer's records and writes them back. It is idempotent: a scrubbed record no longer
matches the customer, so a replayed request changes nothing and reports zero.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from prometheus_client import Counter
from pydantic import SecretStr, ValidationError

from schemas.audit import AuditAction
from schemas.deadletter import DeadLetter, DeadLetterHeader, MessageDeadLettered
from schemas.erasure import ErasureRequest, ErasureRequested, erasure_target
from services.common.access import Principal, Role
from services.common.adapters.erasure import MongoErasure
from services.common.audit import AuditTrail
from services.common.messaging import (
    Outgoing,
    Publisher,
    Record,
    ensure_topics,
    kafka_client_options,
)
from services.common.settings import ServiceSettings
from services.common.topic_reader import read_to_end

if TYPE_CHECKING:
    from services.common.app import Runtime

log = logging.getLogger(__name__)

# Contact details: removed (None), and remembered so dead letters holding them are found.
CONTACT_FIELDS = frozenset({"email", "phone", "webhook_url", "recipient", "recipients", "to",
                            "cc", "bcc", "address", "addresses", "street", "postcode",
                            "postal_code", "city", "name", "first_name", "last_name",
                            "full_name", "display_name"})
# Free text the customer or an operator wrote about them: replaced by ERASED_TEXT.
FREE_TEXT_FIELDS = frozenset({"body", "text", "html", "description", "reason", "note",
                              "notes", "comment", "comments", "summary", "message"})
ERASED_TEXT = "[erased]"  # not empty: contracts require some free text (a review's reason)
_CODE = re.compile(r"[a-z0-9_]*")


class ErasureKeyMissingError(RuntimeError):
    """No pseudonym key is configured: erasing would either lose the money records' owner
    or keep a reversible id, so the request waits (dead-lettered, redriven once set)."""


@dataclass(frozen=True)
class Pseudonyms:
    key: SecretStr | None

    def of(self, customer_id: str) -> str:
        if self.key is None:
            raise ErasureKeyMissingError("erasure_pseudonym_key is not set")
        digest = hmac.new(self.key.get_secret_value().encode(), customer_id.encode(),
                          hashlib.sha256).hexdigest()
        return f"erased-{digest[:32]}"


@dataclass
class Scrub:
    """One customer's scrubbing: the id to replace, its pseudonym, and what was removed."""

    customer_id: str
    pseudonym: str
    removed: set[str] = field(default_factory=set)
    contact_fields: Collection[str] = CONTACT_FIELDS
    free_text_fields: Collection[str] = FREE_TEXT_FIELDS

    def __post_init__(self) -> None:
        # The id as a whole token only: customer "c-1" is not inside "c-12".
        self._id_pattern = re.compile(rf"(?<![\w-]){re.escape(self.customer_id)}(?![\w-])")

    def text(self, value: str) -> str:
        stripped = value.lstrip()
        if stripped[:1] in {"{", "["}:
            try:
                parsed = json.loads(value)
            except ValueError:
                parsed = None
            if isinstance(parsed, dict | list):
                return json.dumps(self.value(parsed), separators=(",", ":"),
                                  ensure_ascii=False)
        if value == self.customer_id:
            return self.pseudonym
        return self._id_pattern.sub(self.pseudonym, value)

    def value(self, value: Any, name: str = "") -> Any:
        if name in self.contact_fields and isinstance(value, str | list | dict):
            self._remember(value)
            return None if isinstance(value, str) else type(value)()
        if name in self.free_text_fields and isinstance(value, str):
            # A code (an incident type as a ledger entry's reason) is not free text.
            return value if _CODE.fullmatch(value) else ERASED_TEXT
        if isinstance(value, dict):
            if "rule_id" in value:  # the policy's own words (a rule's reason, an action's
                # note) explain the money and were never about the customer
                return {key: (item if key in self.free_text_fields and isinstance(item, str)
                              else self.value(item, str(key))) for key, item in value.items()}
            return {key: self.value(item, str(key)) for key, item in value.items()}
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def _remember(self, value: Any) -> None:
        if isinstance(value, str):
            if len(value) >= 4:  # too short to search dead letters for without false hits
                self.removed.add(value)
        elif isinstance(value, dict):
            for item in value.values():
                self._remember(item)
        elif isinstance(value, list):
            for item in value:
                self._remember(item)

    def names_customer(self, text: str) -> bool:
        return self._id_pattern.search(text) is not None

    def needles(self) -> list[str]:
        """What marks a record as this customer's: the id and the details removed."""
        return [self.customer_id, *sorted(self.removed)]


@dataclass
class ErasureReport:
    """What one service touched: records scrubbed (kept, pseudonymised) and deleted, per
    store, and dead letters replaced."""

    scrubbed: dict[str, int] = field(default_factory=dict)
    deleted: dict[str, int] = field(default_factory=dict)
    dead_letters: int = 0
    in_memory: int = 0

    def as_audit(self) -> dict[str, Any]:
        return {"phase": "done", "scrubbed": dict(sorted(self.scrubbed.items())),
                "deleted": dict(sorted(self.deleted.items())),
                "dead_letters": self.dead_letters, "in_memory": self.in_memory}


# --- dead letters ------------------------------------------------------------------------


def _holds(letter: DeadLetter, scrub: Scrub) -> bool:
    parts = [letter.error]
    for encoded in (letter.value_b64, letter.key_b64 or "",
                    *(h.value_b64 for h in letter.headers)):
        try:
            parts.append(base64.b64decode(encoded).decode(errors="replace"))
        except (binascii.Error, ValueError):
            continue
    text = "\n".join(parts)
    return (scrub.names_customer(text)
            or any(detail in text for detail in scrub.removed))


def _scrub_bytes(raw: bytes, scrub: Scrub, needles: Sequence[str]) -> bytes:
    text = raw.decode(errors="replace")
    clean = scrub.text(text)
    if clean == text and text.lstrip()[:1] not in {"{", "["}:
        # Not JSON: nothing tells the personal parts apart, so none of it is kept.
        return b"" if any(n in text for n in needles) else raw
    for needle in needles:  # a detail in a field the walk does not know by name
        clean = clean.replace(needle, "[erased]")
    return clean.encode()


def erased_letter(letter: DeadLetter, scrub: Scrub) -> DeadLetter:
    """The letter without the customer's personal data, under the same id."""
    needles = scrub.needles()
    value = _scrub_bytes(base64.b64decode(letter.value_b64), scrub, needles)
    key = (scrub.pseudonym.encode() if letter.key_b64 is not None else None)
    error = letter.error
    for needle in needles:
        error = error.replace(needle, "[erased]")
    headers = [DeadLetterHeader(
        key=h.key, value_b64=base64.b64encode(
            _scrub_bytes(base64.b64decode(h.value_b64), scrub, needles)).decode())
        for h in letter.headers]
    return letter.model_copy(update={
        "value_b64": base64.b64encode(value).decode(),
        "key_b64": base64.b64encode(key).decode() if key is not None else None,
        "headers": headers, "error": error, "erased": True, "truncated": True})


async def latest_dead_letters(settings: ServiceSettings) -> dict[str, tuple[DeadLetter, Any]]:
    """Every dead letter on the topic, the latest per id (the topic is compacted by id, and
    an erased letter replaces the one before it), with its envelope."""
    found: dict[str, tuple[DeadLetter, Any]] = {}
    for record in await read_to_end(settings.kafka_bootstrap, kafka_client_options(settings),
                                    settings.deadletter_topic):
        try:
            event = MessageDeadLettered.model_validate_json(record.value or b"")
        except ValidationError:
            continue
        found[event.data.dead_letter_id] = (event.data, event)
    return found


async def erase_dead_letters(settings: ServiceSettings, publisher: Publisher,
                             scrub: Scrub) -> int:
    """Publish an erased replacement, under the same key, of each of this service's dead
    letters that holds the customer's id or a detail removed from its stores; compaction
    then deletes the original (docs/adr/0007). Returns how many were replaced."""
    replaced: list[Outgoing] = []
    for letter, event in (await latest_dead_letters(settings)).values():
        if (letter.service != settings.service_name or letter.erased
                or not _holds(letter, scrub)):
            continue
        clean = erased_letter(letter, scrub)
        envelope = event.model_copy(update={"data": clean})
        replaced.append(Outgoing(settings.deadletter_topic, clean.dead_letter_id,
                                 envelope.model_dump_json().encode()))
    await publisher.publish_all(replaced)
    return len(replaced)


def removed_from(values: Iterable[Mapping[str, Any]], scrub: Scrub) -> None:
    """Remember the contact details of these (contract) bodies without changing them."""
    for value in values:
        scrub.value(dict(value))


# --- the consumer every service runs ----------------------------------------------------

BeforeErasure = Callable[[ErasureRequest, str], Awaitable[int]]


def install_erasure(runtime: Runtime, *, delete: Collection[str] = (),
                    skip: Collection[str] = (),
                    before: BeforeErasure | None = None) -> AuditTrail:
    """Consume erasure requests in the service's group: erase the customer from every
    collection of the service's database (deleting those in `delete`, leaving those in
    `skip`), from the service's dead letters, and from memory (`before`, given the request
    and the pseudonym, returns how many entries it dropped); then report what was touched
    as an audit entry (action `erasure`, target `erasure:<id>`)."""
    settings = runtime.settings
    pseudonyms = Pseudonyms(settings.erasure_pseudonym_key)
    trail = runtime.audit_trail()
    stores = MongoErasure(runtime.db, default_tenant=settings.auth_default_tenant)
    runtime.broker.publisher(settings.audit_topic, title=f"{settings.audit_topic}:Publisher")

    async def create_topics() -> None:
        if settings.create_topics:
            await ensure_topics(settings.kafka_bootstrap,
                                [settings.erasures_topic, settings.audit_topic],
                                settings.topic_partitions, settings.topic_replication)

    runtime.on_start.insert(0, create_topics)
    metric = Counter("amends_erasures_total", "Erasure requests carried out",
                     registry=runtime.registry)

    async def when_erasure_requested(records: list[Record]) -> None:
        for record in records:
            request = ErasureRequested.model_validate_json(record.value).data
            pseudonym = pseudonyms.of(request.customer_id)
            report = ErasureReport()
            if before is not None:
                report.in_memory = await before(request, pseudonym)
            scrub = Scrub(request.customer_id, pseudonym)
            await stores.erase(request, scrub, delete=delete, skip={*skip, "audit"},
                               report=report)
            # The trail keeps who acted and from where (an operator's address is not the
            # customer's); the customer's id and free text go.
            audit_scrub = Scrub(request.customer_id, pseudonym, removed=scrub.removed,
                                contact_fields=CONTACT_FIELDS - {"address"})
            await stores.erase_audit(request, audit_scrub, report=report)
            report.dead_letters = await erase_dead_letters(settings, runtime.publisher, scrub)
            actor = Principal(subject=request.requested_by, roles=frozenset({Role.admin}),
                              tenant=request.tenant, via="jwt")
            await trail.record(actor, AuditAction.erasure, erasure_target(request.erasure_id),
                               customer_id=pseudonym, after=report.as_audit(),
                               key=f"done:{record.topic}:{record.partition}:{record.offset}")
            metric.inc()
            log.info("erasure %s: %s", request.erasure_id, report.as_audit())

    runtime.consume([settings.erasures_topic], when_erasure_requested,
                    name="when_erasure_requested")
    return trail
