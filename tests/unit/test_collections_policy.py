"""The collections policy file: the real one loads, every kind of mistake is refused with a message naming the
file, the bucket and the field, and core banking refuses to start with a bad file."""

from __future__ import annotations

import copy
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml

from credia import settings
from credia.collections.policy import BUCKETS, PolicyError, UnknownBucket, load_policy
from credia.core_banking.loans import delinquency_bucket

D = Decimal
POLICY_FILE = settings.PROJECT_ROOT / "policies" / "collections.yml"
RAW: Dict[str, Any] = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))


def test_the_policy_file_loads_with_every_bucket() -> None:
    policy = load_policy()
    verification = policy.verification
    assert (verification.max_failures, verification.lock_minutes) == (3, 30)
    assert (verification.code_ttl_minutes, verification.code_length) == (5, 6)
    early, middle = policy.bucket("1-30"), policy.bucket("31-60")
    assert (early.max_installments, early.offered_installments, early.min_down_payment_rate) == (3, [2, 3], D(0))
    assert (early.max_settlement_discount_rate, early.promise_max_days, early.promise_min_rate) == (D(0), 15, D("0.3"))
    assert (middle.max_installments, middle.offered_installments, middle.offer_validity_days) == (6, [3, 6], 3)
    assert (middle.min_down_payment_rate, middle.max_settlement_discount_rate) == (D("0.1"), D("0.1"))
    assert (middle.promise_max_days, middle.promise_min_rate, middle.min_installment_amount) == (10, D("0.4"), D(50))
    late, last = policy.bucket("61-120"), policy.bucket(">120")
    assert (late.max_installments, late.human_approval_above, late.human_approval_always) == (12, D(15000), False)
    assert (late.promise_max_days, late.promise_min_rate, late.max_settlement_discount_rate) == (7, D("0.5"), D("0.2"))
    assert (last.max_installments, last.offered_installments, last.min_down_payment_rate) == (18, [12, 18], D("0.2"))
    assert (last.max_settlement_discount_rate, last.human_approval_always) == (D("0.35"), True)
    with pytest.raises(UnknownBucket, match="current"):
        policy.bucket("current")


def test_the_buckets_are_those_of_core_banking() -> None:
    assert tuple(dict.fromkeys(delinquency_bucket(days) for days in range(1, 400))) == BUCKETS


def test_the_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = copy.deepcopy(RAW)
    changed["verification"]["max_failures"] = 5
    monkeypatch.setenv("CREDIA_COLLECTIONS_POLICY", str(write(tmp_path, changed)))
    assert load_policy().verification.max_failures == 5


def bucket(name: str, **changes: Any) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["buckets"][name].update(changes)


def drop(name: str, key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["buckets"][name].pop(key)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (drop("31-60", "max_installments"), ["bucket 31-60, field max_installments: missing"]),
        (drop("1-30", "human_approval_above"), ["bucket 1-30, field human_approval_above: missing"]),
        (bucket("31-60", offered_installments=[3, 9]), ["bucket 31-60, field offered_installments", "9 is more"]),
        (bucket("31-60", offered_installments=[3, 3]), ["bucket 31-60, field offered_installments", "more than once"]),
        (bucket("1-30", offered_installments=[]), ["bucket 1-30, field offered_installments", "at least one"]),
        (bucket(">120", max_installments=48), ["bucket >120, field max_installments", "less than or equal to 36"]),
        (bucket("31-60", min_down_payment_rate=0.1), ["bucket 31-60, field min_down_payment_rate", '"0.10"']),
        (bucket("31-60", min_down_payment_rate="10"), ["field min_down_payment_rate", "fraction from"]),
        (bucket("31-60", min_down_payment_rate="-0.1"), ["field min_down_payment_rate", "negative"]),
        (bucket("61-120", max_settlement_discount_rate="1"), ["bucket 61-120", "max_settlement_discount_rate"]),
        (bucket("1-30", min_installment_amount=0), ["bucket 1-30, field min_installment_amount", "greater than"]),
        (bucket("1-30", promise_max_days=45), ["bucket 1-30, field promise_max_days", "30"]),
        (bucket("1-30", promise_min_rate="1.5"), ["bucket 1-30, field promise_min_rate"]),
        (bucket("1-30", human_approval_always="yes"), ["bucket 1-30, field human_approval_always", "boolean"]),
        (bucket("1-30", offer_days=3), ["bucket 1-30, field offer_days", "extra fields not permitted"]),
        (lambda data: data["buckets"].pop(">120"), ["field buckets", "'>120' is missing"]),
        (lambda data: data["buckets"].update({"current": {}}), ["field buckets", "unknown bucket 'current'"]),
        (lambda data: data["verification"].update(max_failures=0), ["field verification.max_failures"]),
        (lambda data: data["verification"].update(code_length=3), ["field verification.code_length"]),
        (lambda data: data.pop("verification"), ["field verification: missing"]),
    ],
)
def test_a_bad_file_is_refused_naming_file_bucket_and_field(
    tmp_path: Path, change: Callable[[Dict[str, Any]], None], expected: list
) -> None:
    data = copy.deepcopy(RAW)
    change(data)
    path = write(tmp_path, data)

    with pytest.raises(PolicyError) as error:
        load_policy(path)

    message = str(error.value)
    assert message.startswith(f"{path}: ")
    for part in expected:
        assert part in message, message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("buckets: {\n  '1-30': [\n", "not valid YAML at line"),
        ("verification: {}\nverification: {}\n", "key 'verification' appears twice"),
        ("- a list\n", "expected the sections 'verification' and 'buckets'"),
    ],
)
def test_a_file_that_is_not_a_policy_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "collections.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PolicyError, match=expected):
        load_policy(path)


def test_a_missing_file_is_refused_naming_the_variable(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="collections policy file not found .set CREDIA_COLLECTIONS_POLICY."):
        load_policy(tmp_path / "nowhere.yml")


def test_core_banking_refuses_to_start_with_a_bad_policy(tmp_path: Path) -> None:
    data = copy.deepcopy(RAW)
    data["buckets"]["31-60"]["offered_installments"] = [3, 9]
    result = subprocess.run(
        [sys.executable, "-m", "credia.core_banking"],
        cwd=settings.PROJECT_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "CREDIA_COLLECTIONS_POLICY": str(write(tmp_path, data)),
            "CORE_BANKING_DATABASE_URL": f"sqlite:///{tmp_path / 'core_banking.db'}",
            "CORE_BANKING_PORT": "1",
            "PAYMENTS_WEBHOOK_SECRET": "secret",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "invalid collections policy" in result.stderr
    assert "bucket 31-60, field offered_installments: 9 is more than max_installments (6)" in result.stderr
    assert not (tmp_path / "core_banking.db").exists()  # nothing was touched


def write(directory: Path, data: Dict[str, Any]) -> Path:
    path = directory / "collections.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
