"""Payments and core banking together, both real processes: a completed link is applied to the loan once."""

from __future__ import annotations

import time
from decimal import Decimal
from typing import Any, Iterator

import pytest

from tests.unit.conftest import CoreBankingService, PaymentsService, start_core_banking


@pytest.fixture(scope="module")
def services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[CoreBankingService, PaymentsService]]:
    folder = tmp_path_factory.mktemp("flow")
    core = start_core_banking(folder)
    payments = PaymentsService(folder / "payments.db", folder / "payments.log", core.url)
    payments.start()
    try:
        yield core, payments
    finally:
        payments.stop()
        core.process.stop()


def overdue_loan(core: CoreBankingService) -> dict[str, Any]:
    """A seeded loan with something overdue, found through the API like the bot will."""
    for customer_id in range(1, 80):
        response = core.get(f"/customers/{customer_id}/loans")
        overdue = [loan for loan in response.json() if Decimal(loan["amount_overdue"]) > 0] if response.ok else []
        if overdue:
            return overdue[0]
    raise AssertionError("no overdue loan in the seed")


def applied_payments(core: CoreBankingService, loan_id: int, payment_id: str) -> list[dict[str, Any]]:
    return [p for p in core.get(f"/loans/{loan_id}/payments").json() if p["external_id"] == payment_id]


def test_completed_link_is_applied_to_the_loan_exactly_once(
    services: tuple[CoreBankingService, PaymentsService]
) -> None:
    core, payments = services
    loan = overdue_loan(core)
    before = Decimal(loan["outstanding_balance"])
    link = payments.new_link(amount=loan["amount_overdue"], customer_id=loan["customer_id"], loan_id=loan["id"])
    assert payments.complete(link["id"]).status_code == 200
    assert payments.complete(link["id"]).status_code == 409

    notification = payments.wait_notification(link["id"], lambda row: row["delivered_at"] is not None)
    assert notification["attempts"] == 1
    payment_id = payments.get(f"/links/{link['id']}").json()["payment_id"]
    time.sleep(0.5)  # room for a wrongly repeated delivery to show up
    assert len(applied_payments(core, loan["id"], payment_id)) == 1
    after = core.get(f"/loans/{loan['id']}").json()
    assert Decimal(after["amount_overdue"]) < Decimal(loan["amount_overdue"]) or after["days_past_due"] == 0
    assert Decimal(after["outstanding_balance"]) < before


def test_payment_made_while_core_banking_is_down_is_applied_once_when_it_is_back(
    services: tuple[CoreBankingService, PaymentsService]
) -> None:
    core, payments = services
    loan = overdue_loan(core)
    core.process.stop()
    try:
        link = payments.new_link(amount="10.00", customer_id=loan["customer_id"], loan_id=loan["id"])
        assert payments.complete(link["id"]).status_code == 200
        failing = payments.wait_notification(link["id"], lambda row: row["attempts"] >= 2)
        assert failing["delivered_at"] is None and failing["last_error"]
    finally:
        core.process.start()
        core.process.wait_healthy(60)
    payments.wait_notification(link["id"], lambda row: row["delivered_at"] is not None, timeout=30)
    payment_id = payments.get(f"/links/{link['id']}").json()["payment_id"]
    rows = applied_payments(core, loan["id"], payment_id)
    assert len(rows) == 1 and Decimal(rows[0]["amount"]) == Decimal("10.00")
