"""The credit policy file: the real one loads, and every kind of mistake is refused with a message that names
the file, the product and the field, by the loader and by core banking at start-up."""

from __future__ import annotations

import copy
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Dict

import pytest
import yaml
from sqlalchemy import create_engine, text

from credia import settings
from credia.core_banking.models import outdated_tables
from credia.credit.policy import EmploymentType, PolicyError, UnknownProduct, load_policy

D = Decimal
POLICY_FILE = settings.PROJECT_ROOT / "policies" / "credit.yml"
RAW: Dict[str, Any] = yaml.safe_load(POLICY_FILE.read_text(encoding="utf-8"))


def test_the_policy_file_loads_with_every_product() -> None:
    policy = load_policy()
    assert [product.code for product in policy.products] == ["PERSONAL", "CONVENIO", "PYME", "VEHICULAR"]
    personal = policy.product("personal")
    assert (personal.name, personal.currency, personal.tea, personal.moratory_tea) == (
        "Préstamo Personal", "PEN", D("0.45"), D("0.12")
    )
    assert (personal.amount.min, personal.amount.max, personal.term_months.min, personal.term_months.max) == (
        D("1000"), D("50000"), 6, 48
    )
    assert personal.fees.insurance_monthly == D("0.00077")
    assert personal.employment[EmploymentType.SELF_EMPLOYED] == 12
    assert [doc.code for doc in personal.required_documents] == ["dni", "income_proof", "utility_bill"]
    bands = personal.installment_to_income
    assert [bands.ratio_for(D(income)) for income in ("1499.99", "1500", "8000", "8000.01")] == [
        D("0.2"), D("0.3"), D("0.3"), D("0.4")
    ]
    rules = policy.rules
    assert rules.bureau.decline_ratings == ["Deficiente", "Dudoso", "Pérdida"]
    assert rules.bureau.refer_ratings == ["CPP"]
    assert (rules.arrears_with_us.refer_above_days, rules.arrears_with_us.decline_above_days) == (0, 30)
    assert rules.refer_amount_above == D("100000")
    with pytest.raises(UnknownProduct):
        policy.product("HIPOTECARIO")


def test_the_path_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    changed = copy.deepcopy(RAW)
    changed["products"][0]["name"] = "Préstamo Libre"
    path = write(tmp_path, changed)
    monkeypatch.setenv("CREDIT_POLICY_PATH", str(path))
    assert load_policy().product("PERSONAL").name == "Préstamo Libre"


def test_bureau_ratings_may_be_written_without_accents(tmp_path: Path) -> None:
    changed = copy.deepcopy(RAW)
    changed["rules"]["bureau"]["decline_ratings"] = ["deficiente", "DUDOSO", "Perdida"]
    assert load_policy(write(tmp_path, changed)).rules.bureau.decline_ratings == ["Deficiente", "Dudoso", "Pérdida"]


def product(index: int, **changes: Any) -> Callable[[Dict[str, Any]], None]:
    def change(data: Dict[str, Any]) -> None:
        data["products"][index].update(changes)

    return change


def drop(index: int, key: str) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["products"][index].pop(key)


def rule(section: str, **changes: Any) -> Callable[[Dict[str, Any]], None]:
    return lambda data: data["rules"][section].update(changes)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (drop(0, "tea"), ["product PERSONAL", "field tea", "missing"]),
        (drop(2, "required_documents"), ["product PYME", "field required_documents", "missing"]),
        (product(0, amount={"min": 60000, "max": 50000}), ["PERSONAL", "field amount", "min (60000.00)", "max"]),
        (product(1, term_months={"min": 24, "max": 12}), ["CONVENIO", "field term_months", "min (24)"]),
        (product(0, tea="-5 %"), ["PERSONAL", "field tea", "negative"]),
        (product(0, tea=0.45), ["PERSONAL", "field tea", "percentage"]),
        (product(3, fees={"origination": "1 %", "insurance_monthly": "-0.06 %"}), ["VEHICULAR", "insurance_monthly"]),
        (product(0, min_monthly_income=-1), ["PERSONAL", "min_monthly_income", "negative"]),
        (product(0, employment={"employee": 6, "freelancer": 3}), ["PERSONAL", "employment", "'freelancer'"]),
        (product(0, employment={}), ["PERSONAL", "employment", "at least one"]),
        (product(0, employment={"employee": -2}), ["PERSONAL", "employment"]),
        (product(0, age={"min": 21, "max_at_maturity": 21}), ["PERSONAL", "field age", "less than"]),
        (product(0, installment_to_income={"default": "130 %"}), ["PERSONAL", "installment_to_income.default"]),
        (
            product(0, installment_to_income={"default": "30 %", "low_income": {"below": 9000, "ratio": "20 %"},
                                              "high_income": {"above": 8000, "ratio": "40 %"}}),
            ["PERSONAL", "installment_to_income", "low_income.below"],
        ),
        (product(0, currency="USD"), ["products", "one currency"]),
        (product(1, code="PERSONAL"), ["products", "'PERSONAL'", "more than once"]),
        (product(0, tea_rate="45 %"), ["PERSONAL", "field tea_rate", "extra fields not permitted"]),
        (
            product(0, required_documents=[{"code": "dni", "label": "DNI"}, {"code": "dni", "label": "Otra vez"}]),
            ["PERSONAL", "required_documents", "'dni'"],
        ),
        (rule("bureau", decline_ratings=["Malo"]), ["field rules.bureau.decline_ratings.0", "'Malo'"]),
        (rule("bureau", refer_ratings=["CPP", "Dudoso"]), ["rules.bureau", "'Dudoso'"]),
        (rule("arrears_with_us", refer_above_days=45), ["rules.arrears_with_us", "refer_above_days (45)"]),
        (rule("counter_offer", min_share_of_requested="150 %"), ["rules.counter_offer.min_share_of_requested"]),
        (rule("counter_offer", round_down_to=0), ["rules.counter_offer.round_down_to", "greater than zero"]),
        (lambda data: data["rules"].pop("refer_amount_above"), ["field rules.refer_amount_above", "missing"]),
    ],
)
def test_a_bad_file_is_refused_naming_file_product_and_field(
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
        ("products: [\n  {code: PERSONAL\n", "not valid YAML at line"),
        ("rules: {}\nrules: {}\nproducts: []\n", "key 'rules' appears twice"),
        ("- just\n- a list\n", "expected the sections 'products' and 'rules'"),
        ("", "expected the sections"),
    ],
)
def test_a_file_that_is_not_a_policy_is_refused(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "credit.yml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(PolicyError, match=expected):
        load_policy(path)


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "nowhere.yml")


def test_core_banking_refuses_to_start_with_a_bad_policy(tmp_path: Path) -> None:
    data = copy.deepcopy(RAW)
    data["products"][0]["amount"] = {"min": 60000, "max": 50000}
    result = subprocess.run(
        [sys.executable, "-m", "credia.core_banking"],
        cwd=settings.PROJECT_ROOT,
        env={
            "PATH": "/usr/bin:/bin",
            "CREDIT_POLICY_PATH": str(write(tmp_path, data)),
            "CORE_BANKING_DATABASE_URL": f"sqlite:///{tmp_path / 'core_banking.db'}",
            "CORE_BANKING_PORT": "1",
            "PAYMENTS_WEBHOOK_SECRET": "secret",
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "invalid credit policy" in result.stderr
    assert "product PERSONAL, field amount" in result.stderr
    assert not (tmp_path / "core_banking.db").exists()  # nothing was touched


def test_a_database_from_an_older_version_is_reported(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'old.db'}", future=True)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE credit_applications (id INTEGER PRIMARY KEY, amount TEXT)"))
    problems = outdated_tables(engine)
    assert len(problems) == 1 and problems[0].startswith("credit_applications (") and "code" in problems[0]


def write(directory: Path, data: Dict[str, Any]) -> Path:
    path = directory / "credit.yml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path
