"""The detection rules as pure functions: thresholds, bands and their top-ups, scheduled
checks, item reports, cancellations, double charges, support waits, outages and reports."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from schemas.common import Money
from schemas.incident import Detection, IncidentType, Severity, incident_id
from schemas.report import IncidentReport
from schemas.upstream import upstream_event_adapter
from services.intake.domain import detection as rules
from services.intake.domain.detection import Capture, CheckKind, OrderPayments, Thresholds
from tests import factories as f

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
BANDS = (("late", 0), ("very_late", 240), ("severely_late", 1440), ("lost", 4320))
TH = Thresholds(BANDS, grace_minutes=15, support_sla_minutes=240)


def parse(body: dict[str, Any]) -> Any:
    return upstream_event_adapter.validate_python(body)


def minutes(n: int) -> timedelta:
    return timedelta(minutes=n)


@pytest.mark.parametrize(("late", "band"), [(0, 0), (239, 0), (240, 1), (1439, 1), (1440, 2),
                                            (99_999, 3)])
def test_the_worst_band_reached_applies(late: int, band: int) -> None:
    assert TH.band_index(late) == band


def test_a_delivery_is_late_only_after_the_grace_period() -> None:
    assert not TH.is_late(15)
    assert TH.is_late(16)
    assert Thresholds(BANDS).is_late(1)
    assert not Thresholds(BANDS).is_late(0)


def test_an_order_with_a_promise_gets_a_check_when_the_grace_period_ends() -> None:
    placed = parse(f.order_placed("c", "o-1", at=T0, promised=T0 + minutes(60)))
    check = rules.delivery_check(placed, TH)
    assert check is not None
    assert check.kind is CheckKind.delivery
    assert check.due_at == T0 + minutes(60 + 16)
    assert check.check_id == "delivery:o-1:0"
    assert check.order_value is not None
    assert check.order_value.amount == Decimal("42.00")
    assert rules.delivery_check(parse(f.order_placed("c", "o-2", at=T0, promised=None)),
                                TH) is None


def test_a_due_check_apologises_first_and_tops_up_as_the_delay_grows() -> None:
    promised = T0
    check = rules.delivery_check(parse(f.order_placed("c", "o-1", at=T0 - minutes(60),
                                                      promised=promised)), TH)
    assert check is not None
    first, following = rules.run_check(check, check.due_at, TH)
    assert first is not None
    assert (first.delay_band, first.delay_minutes, first.severity) == ("late", 16,
                                                                       Severity.low)
    assert first.detection is Detection.proactive
    assert first.incident_id == incident_id(IncidentType.delivery_delayed, "o-1", "late")
    assert following is not None
    assert (following.step, following.due_at) == (1, promised + minutes(240))

    top_up, following = rules.run_check(following, following.due_at, TH)
    assert top_up is not None
    assert top_up.delay_band == "very_late"
    assert top_up.incident_id != first.incident_id
    assert following is not None
    assert following.due_at == promised + minutes(1440)


def test_a_check_run_late_jumps_to_the_band_reached_and_the_last_band_ends_the_checks() -> None:
    check = rules.delivery_check(parse(f.order_placed("c", "o-1", at=T0, promised=T0)), TH)
    assert check is not None
    incident, following = rules.run_check(check, T0 + minutes(5000), TH)
    assert incident is not None
    assert incident.delay_band == "lost"
    assert incident.severity is Severity.critical
    assert following is None


def test_a_check_run_before_its_time_waits() -> None:
    check = rules.delivery_check(parse(f.order_placed("c", "o-1", at=T0, promised=T0)), TH)
    assert check is not None
    assert rules.run_check(check, T0, TH) == (None, check)


def test_a_late_delivery_raises_the_band_it_reached_with_the_same_id_as_the_check() -> None:
    on_time = parse(f.delivered("c", "o-1", at=T0 + minutes(15), promised=T0))
    assert rules.late_delivery(on_time, None, T0, TH) is None
    late = parse(f.delivered("c", "o-1", at=T0 + minutes(300), promised=T0))
    incident = rules.late_delivery(late, None, T0, TH)
    assert incident is not None
    assert (incident.delay_band, incident.delay_minutes) == ("very_late", 300)
    assert incident.incident_id == incident_id(IncidentType.delivery_delayed, "o-1",
                                               "very_late")
    assert "delivered 300 minutes after" in incident.summary


def test_a_delivery_without_a_promise_uses_the_one_the_order_was_placed_with() -> None:
    event = parse(f.delivered("c", "o-1", at=T0 + minutes(30), total=None))
    assert rules.late_delivery(event, None, T0, TH) is None
    incident = rules.late_delivery(event, T0, T0, TH)
    assert incident is not None
    assert incident.delay_minutes == 30


@pytest.mark.parametrize(("problem", "kind"), [("defective", IncidentType.item_defective),
                                               ("wrong_item", IncidentType.wrong_item),
                                               ("missing", IncidentType.item_missing)])
def test_item_reports_are_customer_reported_with_the_items_value(problem: str,
                                                                 kind: IncidentType) -> None:
    event = parse(f.item_reported("c", "o-1", at=T0, problem=problem, price="19.99",
                                  quantity=3))
    incident = rules.item_reported(event, T0)
    assert incident.type is kind
    assert incident.detection is Detection.customer_reported
    assert incident.item_value is not None
    assert incident.item_value.amount == Decimal("59.97")
    assert incident.incident_id == incident_id(kind, "o-1", "sku-1")


def test_only_a_paid_order_cancelled_by_the_merchant_is_an_incident() -> None:
    captured = eur("42.00")
    mine = parse(f.order_cancelled("c", "o-1", at=T0, by="customer"))
    assert rules.merchant_cancellation(mine, captured, now=T0) is None
    unpaid = parse(f.order_cancelled("c", "o-1", at=T0, paid=False))
    assert rules.merchant_cancellation(unpaid, None, now=T0) is None
    assert rules.merchant_cancellation(unpaid, eur("0.00"), now=T0) is None
    seen_paid = rules.merchant_cancellation(unpaid, captured, now=T0)
    assert seen_paid is not None
    assert seen_paid.captured_amount == captured  # the ceiling of its refund
    paid = rules.merchant_cancellation(parse(f.order_cancelled("c", "o-1", at=T0)), None, T0)
    assert paid is not None
    assert paid.captured_amount is None
    assert paid.type is IncidentType.order_cancelled
    assert paid.incident_id == incident_id(IncidentType.order_cancelled, "o-1")


def eur(amount: str) -> Money:
    return Money.of(amount, "EUR")


def verdicts(*captures: Capture) -> list[tuple[str | None, str]]:
    """(excess, captured) of each capture, recorded in this order."""
    order = OrderPayments(captures=list(captures))
    out = []
    for capture in captures:
        verdict = order.verdict(capture.payment_id)
        assert verdict is not None
        out.append((str(verdict.excess.amount) if verdict.excess else None,
                    str(verdict.captured.amount)))
    return out


def test_the_same_amount_captured_twice_without_a_total_is_a_double_charge() -> None:
    first = parse(f.payment_captured("c", "o-1", "p-1", at=T0))
    second = parse(f.payment_captured("c", "o-1", "p-2", at=T0 + minutes(1)))
    order = OrderPayments(captures=[rules.capture_of(first), rules.capture_of(second)])
    first_verdict = order.verdict("p-1")
    assert first_verdict is not None
    assert rules.double_charge(first, first_verdict, eur("42.00"), T0) is None
    verdict = order.verdict("p-2")
    assert verdict is not None
    incident = rules.double_charge(second, verdict, eur("42.00"), T0)
    assert incident is not None
    assert incident.charged_amount == eur("42.00")
    assert incident.captured_amount == eur("84.00")
    assert incident.incident_id == incident_id(IncidentType.double_charge, "o-1", "p-2")
    assert "charged twice" in incident.summary


def test_partial_captures_and_split_shipments_within_the_total_are_not_double_charges(
        ) -> None:
    total = eur("42.00")
    assert verdicts(Capture("p-1", eur("20.00"), order_total=total),
                    Capture("p-2", eur("22.00"), order_total=total)) == [
        (None, "20.00"), (None, "42.00")]
    # Two shipments of the same value are not a double charge when the total allows both.
    assert verdicts(Capture("p-1", eur("21.00"), order_total=total),
                    Capture("p-2", eur("21.00"), order_total=total)) == [
        (None, "21.00"), (None, "42.00")]
    # Without a total, different amounts are taken for partial captures.
    assert verdicts(Capture("p-1", eur("42.00")), Capture("p-2", eur("40.00"))) == [
        (None, "42.00"), (None, "82.00")]


def test_captures_above_the_total_are_a_double_charge_for_what_exceeds_it() -> None:
    total = eur("42.00")
    assert verdicts(Capture("p-1", eur("30.00"), order_total=total),
                    Capture("p-2", eur("30.00"), order_total=total),
                    Capture("p-3", eur("5.00"), order_total=total)) == [
        (None, "30.00"), ("18.00", "60.00"), ("5.00", "65.00")]
    assert verdicts(Capture("p-1", eur("42.00"), order_total=total),
                    Capture("p-2", eur("42.00"), order_total=total)) == [
        (None, "42.00"), ("42.00", "84.00")]


def test_a_re_authorisation_that_replaces_a_payment_is_not_a_double_charge() -> None:
    total = eur("42.00")
    assert verdicts(Capture("p-1", eur("42.00")),
                    Capture("p-2", eur("42.00"), replaces="p-1")) == [
        (None, "42.00"), (None, "42.00")]
    # Recorded the other way round (the re-authorisation first), the replaced one is nothing.
    assert verdicts(Capture("p-2", eur("42.00"), replaces="p-1", order_total=total),
                    Capture("p-1", eur("42.00"), order_total=total)) == [
        (None, "42.00"), (None, "42.00")]
    # A third capture on top of the re-authorised payment is one again.
    assert verdicts(Capture("p-1", eur("42.00")),
                    Capture("p-2", eur("42.00"), replaces="p-1"),
                    Capture("p-3", eur("42.00"))) == [
        (None, "42.00"), (None, "42.00"), ("42.00", "84.00")]


def test_support_tickets_against_the_first_answer_sla() -> None:
    opened = T0
    in_time = parse(f.ticket_updated("c", "t-1", opened=opened, at=T0 + minutes(60),
                                     status="answered", first_response=T0 + minutes(60)))
    assert rules.support_ticket(in_time, T0 + minutes(60), TH) == rules.TicketVerdict(
        answered=True)
    late = parse(f.ticket_updated("c", "t-1", opened=opened, at=T0 + minutes(300),
                                  status="answered", first_response=T0 + minutes(300)))
    verdict = rules.support_ticket(late, T0 + minutes(301), TH)
    assert verdict.answered
    assert verdict.incident is not None
    assert verdict.incident.wait_minutes == 300
    assert verdict.incident.incident_id == incident_id(IncidentType.support_wait_exceeded,
                                                       "t-1")
    waiting = parse(f.ticket_updated("c", "t-2", opened=opened, at=T0))
    verdict = rules.support_ticket(waiting, T0 + minutes(10), TH)
    assert verdict.incident is None
    assert verdict.check is not None
    assert verdict.check.due_at == opened + minutes(241)
    incident, following = rules.run_check(verdict.check, verdict.check.due_at, TH)
    assert incident is not None
    assert (incident.wait_minutes, following) == (241, None)
    # Read 500 minutes later (consumer lag), the same update proves no long wait: a later
    # one with the answer may be queued behind it. Its check fires on event time.
    read_late = rules.support_ticket(waiting, T0 + minutes(500), TH)
    assert read_late.incident is None
    assert read_late.check == verdict.check
    still_waiting = parse(f.ticket_updated("c", "t-2", opened=opened, at=T0 + minutes(500)))
    overdue = rules.support_ticket(still_waiting, T0 + minutes(501), TH)
    assert overdue.incident is not None
    assert overdue.incident.wait_minutes == 500
    assert overdue.incident.severity is Severity.medium


def test_an_outage_is_one_incident_per_customer() -> None:
    event = parse(f.outage_declared("out-1", at=T0, customers=["a", "b", "a"],
                                    severity="critical"))
    incidents = rules.outage_incidents(event, event.data.affected_customers, T0)
    assert [i.customer.id for i in incidents] == ["a", "b"]
    assert {i.severity for i in incidents} == {Severity.high}
    assert incidents[0].incident_id == incident_id(IncidentType.service_outage, "out-1", "a")
    assert all(i.outage_minutes is None for i in incidents)
    assert rules.outage_incidents(event, [], T0, 42) == []
    done = rules.outage_incidents(event, event.data.affected_customers[:1], T0, 42)
    assert done[0].outage_minutes == 42


def test_an_outage_resolved_after_its_fan_out_tells_each_customer_told_of_it_its_duration(
        ) -> None:
    event = parse(f.outage_declared("out-1", at=T0, customers=["a", "b"]))
    ongoing = rules.outage_incidents(event, event.data.affected_customers, T0)
    knew = rules.outage_incidents(event, event.data.affected_customers[:1], T0, 30)
    elsewhere = parse(f.outage_declared("out-2", at=T0, customers=["c"]))
    other = rules.outage_incidents(elsewhere, elsewhere.data.affected_customers, T0)
    later = T0 + minutes(80)
    told = rules.outage_resolved_incidents("out-1", [*ongoing, *knew, *ongoing, *other], 75,
                                           later, source="status", source_event_id="e-r")
    assert [i.customer.id for i in told] == ["a", "b"]
    assert [i.incident_id for i in told] == [rules.resolved_outage_id("out-1", c)
                                             for c in ("a", "b")]
    assert not {i.incident_id for i in told} & {i.incident_id for i in ongoing}
    first = ongoing[0]
    assert told[0].model_dump(exclude={"incident_id", "detected_at", "source",
                                       "source_event_id", "outage_minutes", "summary"}) == (
        first.model_dump(exclude={"incident_id", "detected_at", "source", "source_event_id",
                                  "outage_minutes", "summary"}))
    assert (told[0].outage_minutes, told[0].detected_at, told[0].source,
            told[0].source_event_id) == (75, later, "status", "e-r")
    assert "resolved after 75 minutes" in told[0].summary
    # A redelivery builds the same incidents; the stage told already adds no third one.
    assert rules.outage_resolved_incidents("out-1", [*ongoing, *told], 75, later,
                                           source="status", source_event_id="e-r") == told


def test_a_reported_item_problem_is_the_same_incident_as_the_detected_one() -> None:
    detected = rules.item_reported(parse(f.item_reported("c", "o-1", at=T0)), T0)
    report = IncidentReport.model_validate({
        "report_id": "r-1", "type": "item_defective", "customer": f.customer("c"),
        "occurred_at": T0.isoformat(), "order_id": "o-1", "item_sku": "sku-1"})
    reported = rules.reported_incident(report, "desk", T0)
    assert reported.incident_id == detected.incident_id
    assert reported.detection is Detection.agent_reported
    other = report.model_copy(update={"type": IncidentType.delivery_delayed})
    assert rules.reported_incident(other, "desk", T0).incident_id == incident_id(
        IncidentType.delivery_delayed, "desk", "r-1")


def test_a_check_measures_the_delay_where_intake_has_read_to_not_at_the_wall_clock() -> None:
    check = rules.delivery_check(parse(f.order_placed("c", "o-1", at=T0, promised=T0)), TH)
    assert check is not None
    # The wall clock is five hours on, but the partition is read only to 40 minutes: the
    # order is known to be 40 minutes late, not 300.
    incident, following = rules.run_check(check, T0 + minutes(300), TH, T0 + minutes(40))
    assert incident is not None
    assert (incident.delay_minutes, incident.delay_band) == (40, "late")
    assert incident.delivered_at is None
    assert "not delivered 40 minutes" in incident.summary
    assert following is not None
    assert following.due_at == T0 + minutes(240)


def test_a_late_delivery_says_when_it_arrived() -> None:
    late = parse(f.delivered("c", "o-1", at=T0 + minutes(95), promised=T0))
    incident = rules.late_delivery(late, None, T0 + minutes(96), TH)
    assert incident is not None
    assert incident.delivered_at == T0 + minutes(95)
    assert not incident.cause_fixed


@pytest.mark.parametrize(("late", "severity"), [(16, Severity.low), (119, Severity.low),
                                                (120, Severity.medium), (480, Severity.high),
                                                (1440, Severity.critical)])
def test_a_delay_is_as_severe_as_it_is_long(late: int, severity: Severity) -> None:
    assert rules.delay_severity(late) is severity


def test_the_default_bands_start_where_the_default_policy_changes_its_delay_remedy() -> None:
    """A check fires as each band is reached: a band wider than a policy step would decide a
    whole step with the remedy of the one before it."""
    from services.decision.domain.policy import load_policy
    from services.intake.settings import IntakeSettings

    policy = load_policy("deploy/policy/default.yaml")
    steps = {0}
    for rule in policy.rules:
        when = rule.when
        if when.type == [IncidentType.delivery_delayed] and when.delay_minutes is not None:
            for bound in (when.delay_minutes.gte, when.delay_minutes.lt):
                if bound is not None:
                    steps.add(int(bound))
    starts = {start for _, start in IntakeSettings().delay_bands}
    assert steps <= starts, f"policy steps {sorted(steps - starts)} have no band"
