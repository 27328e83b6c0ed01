"""The Rasa component that tags values: entities on real ``Message`` objects, as the NLU pipeline runs it."""

from __future__ import annotations

import random
from datetime import date, datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from rasa.engine import validation
from rasa.engine.graph import ExecutionContext, GraphSchema
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.local_model_storage import LocalModelStorage
from rasa.engine.storage.resource import Resource
from rasa.shared.data import TrainingType
from rasa.shared.nlu.constants import ENTITIES, TEXT
from rasa.shared.nlu.training_data.message import Message

from credia.nlu import extractor as extractor_module
from credia.nlu.extractor import ENTITY_TYPES, SpanishValueExtractor, extract_entities

COMPONENT = "credia.nlu.extractor.SpanishValueExtractor"


@pytest.fixture(scope="module")
def extractor(tmp_path_factory: pytest.TempPathFactory) -> SpanishValueExtractor:
    """Built the way Rasa builds it for a parse: the recipe's ``load`` with the model's storage."""
    storage = LocalModelStorage(tmp_path_factory.mktemp("model"))
    context = ExecutionContext(GraphSchema({}), "test-model")
    return SpanishValueExtractor.load(
        {**SpanishValueExtractor.get_default_config()}, storage, Resource("values"), context
    )


def parse(extractor: SpanishValueExtractor, text: Any, entities: Optional[List[Dict[str, Any]]] = None) -> Message:
    data: Dict[str, Any] = {TEXT: text}
    if entities is not None:
        data[ENTITIES] = entities
    (message,) = extractor.process([Message(data=data)])
    return message


def tagged(extractor: SpanishValueExtractor, text: str) -> List[Tuple[str, str, str, Optional[str]]]:
    """(entity, the words it covers, value, role) for each entity added."""
    return [
        (entity["entity"], text[entity["start"]:entity["end"]], entity["value"], entity.get("role"))
        for entity in parse(extractor, text).get(ENTITIES)
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("quiero 8000 soles en 18 meses",
         [("amount", "8000 soles", "8000.00", None), ("term_months", "18 meses", "18", None)]),
        ("5 mil a 12 meses", [("amount", "5 mil", "5000.00", None), ("term_months", "12 meses", "12", None)]),
        ("3500", [("amount", "3500", "3500.00", None)]),
        ("24", [("amount", "24", "24.00", None)]),  # a bare number answers whatever was asked; never a term
        ("S/ 5,000.50", [("amount", "S/ 5,000.50", "5000.50", None)]),
        ("5k", [("amount", "5k", "5000.00", None)]),
        ("quiero un préstamo de cinco mil soles a dieciocho meses",
         [("amount", "cinco mil soles", "5000.00", None), ("term_months", "dieciocho meses", "18", None)]),
        ("necesito 15 mil, a 2 años", [("amount", "15 mil", "15000.00", None), ("term_months", "2 años", "24", None)]),
        ("quiero 5000 a 24", [("amount", "5000", "5000.00", None), ("term_months", "a 24", "24", None)]),
        ("año y medio", [("term_months", "año y medio", "18", None)]),
        ("treinta y seis cuotas", [("term_months", "treinta y seis cuotas", "36", None)]),
        ("naci el 15 de marzo del 90", [("date", "15 de marzo del 90", "1990-03-15", None)]),
        ("15/03/1990", [("date", "15/03/1990", "1990-03-15", None)]),
        ("1990-03-15", [("date", "1990-03-15", "1990-03-15", None)]),
        ("mi dni es 10117410", [("document_number", "10117410", "10117410", None)]),
        ("10117410-2", [("document_number", "10117410-2", "101174102", None)]),
        ("DNI 10 117 410", [("document_number", "10 117 410", "10117410", None)]),
        ("12.531.909-2", [("document_number", "12.531.909-2", "125319092", None)]),
        ("BOXW310820HNERXN09", [("document_number", "BOXW310820HNERXN09", "BOXW310820HNERXN09", None)]),
        ("mi correo es Maria.Quispe85@Hotmail.com",
         [("email", "Maria.Quispe85@Hotmail.com", "Maria.Quispe85@hotmail.com", None)]),
        ("mi cel es 987 654 321", [("phone", "987 654 321", "+51987654321", None)]),
        ("+51 987-654-321", [("phone", "+51 987-654-321", "+51987654321", None)]),
        ("51987654321", [("phone", "51987654321", "+51987654321", None)]),
        ("SOL-7K3M9Q", [("application_code", "SOL-7K3M9Q", "SOL-7K3M9Q", None)]),
        ("como va mi solicitud sol 7k3m9q?", [("application_code", "sol 7k3m9q", "SOL-7K3M9Q", None)]),
        ("SOL7K3M9Q", [("application_code", "SOL7K3M9Q", "SOL-7K3M9Q", None)]),
    ],
)
def test_values_are_tagged(extractor: SpanishValueExtractor, text: str, expected: list) -> None:
    assert tagged(extractor, text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("gano 3500 al mes", [("3500", "income")]),
        ("gano 3500", [("3500", "income")]),
        ("mi sueldo es de 2 mil quinientos soles", [("2 mil quinientos soles", "income")]),
        ("mis ingresos son S/ 4,200 mensuales", [("S/ 4,200", "income")]),
        ("mi ingreso mensual es de 4200", [("4200", "income")]),
        ("percibo 3 mil", [("3 mil", "income")]),
        ("me pagan 1800 quincenal", [("1800", "income")]),
        ("mi salario: 2,300.00", [("2,300.00", "income")]),
        ("3500 de sueldo", [("3500", "income")]),
        ("3500 soles es mi sueldo", [("3500 soles", "income")]),
        ("ganancias de unos 6 mil al mes", [("6 mil", "income")]),
        ("gane 3000 el mes pasado", [("3000", "income")]),
        ("quiero 10000, gano 3000", [("10000", None), ("3000", "income")]),
        ("gano 3000 y quiero 10000", [("3000", "income"), ("10000", None)]),
        ("mi sueldo es 2500 y necesito 8 mil a 24 meses", [("2500", "income"), ("8 mil", None)]),
        ("necesito 10 mil porque mis ingresos son bajos", [("10 mil", None)]),
        ("mis ingresos son bajos, quiero 5000", [("5000", None)]),
        ("pago 500 al mes", [("500", None)]),  # an installment, not earnings
        ("quiero 8000", [("8000", None)]),
    ],
)
def test_income_role(extractor: SpanishValueExtractor, text: str, expected: list) -> None:
    amounts = [(words, role) for entity, words, _value, role in tagged(extractor, text) if entity == "amount"]
    assert amounts == expected


def test_amounts_without_income_have_no_role_key(extractor: SpanishValueExtractor) -> None:
    (entity,) = parse(extractor, "quiero 8000").get(ENTITIES)
    assert "role" not in entity
    assert entity == {
        "entity": "amount", "start": 7, "end": 11, "value": "8000.00", "confidence": 1.0,
        "extractor": "SpanishValueExtractor",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("987654321", [("phone", "987654321")]),  # 9 digits starting with 9: a mobile, not an amount
        ("10117410", [("document_number", "10117410")]),  # 8 digits: a DNI, not an amount
        ("S/ 10.117.410", [("amount", "S/ 10.117.410")]),  # with a currency it is money
        ("8000", [("amount", "8000")]),  # 4 digits are never a document
        ("15.03.90", [("date", "15.03.90")]),
        ("dni 987654321", [("document_number", "987654321")]),
        ("5000@mail.com", [("email", "5000@mail.com")]),
        ("Soy Ana, DNI 10117410, nací el 15/03/1990, cel 987 654 321, ana@mail.com, quiero S/ 8,000 a 24 meses",
         [("document_number", "10117410"), ("date", "15/03/1990"), ("phone", "987 654 321"), ("email", "ana@mail.com"),
          ("amount", "S/ 8,000"), ("term_months", "24 meses")]),
    ],
)
def test_dates_phones_and_ids_win_over_amounts(extractor: SpanishValueExtractor, text: str, expected: list) -> None:
    assert [(entity, words) for entity, words, _value, _role in tagged(extractor, text)] == expected


@pytest.mark.parametrize(
    "text",
    [
        "hola",
        "quiero un préstamo personal",  # the product is DIET's entity, not a value
        "soy independiente",
        "tengo 2 hijos",
        "tengo 35 años",
        "a las 5 de la tarde",
        "el 15 % de inicial",
        "en la mañana",
        "los viernes",
        "mil gracias",
        "solicitud",
        "¿qué tasa tienen? 45%",
        "😀😀😀",
        "",
        "   ",
    ],
)
def test_nothing_is_tagged_where_there_is_no_value(extractor: SpanishValueExtractor, text: str) -> None:
    assert parse(extractor, text).get(ENTITIES) == []


def test_entities_of_other_extractors_are_kept(extractor: SpanishValueExtractor) -> None:
    product = {"entity": "product", "start": 13, "end": 21, "value": "personal", "extractor": "DIETClassifier"}
    message = parse(extractor, "un préstamo personal de 5 mil", [product])
    assert message.get(ENTITIES)[0] == product
    assert [entity["entity"] for entity in message.get(ENTITIES)] == ["product", "amount"]
    assert message.as_dict_nlu()[ENTITIES] == message.get(ENTITIES)  # part of the parse result


def test_every_message_of_a_batch_is_processed(extractor: SpanishValueExtractor) -> None:
    messages = [Message(data={TEXT: text}) for text in ("5 mil", "hola", "SOL-7K3M9Q")]
    extractor.process(messages)
    assert [[entity["value"] for entity in message.get(ENTITIES)] for message in messages] == [
        ["5000.00"], [], ["SOL-7K3M9Q"]
    ]


@pytest.mark.parametrize("text", [None, 12345, "\x00\x01", "İ" * 300, "9" * 5000, "1 " * 2500, "mil " * 1250,
                                  "dni" + " :" * 2000, "a@" * 2500, "١٢٣ soles", "\u202e5000"])
def test_odd_messages_never_raise(extractor: SpanishValueExtractor, text: Any) -> None:
    entities = parse(extractor, text).get(ENTITIES)
    assert isinstance(entities, list)


def test_random_messages_never_raise_and_spans_stay_inside(extractor: SpanishValueExtractor) -> None:
    pieces = ["5", "0", "9", "10117410", " ", ".", ",", "-", "/", "S/", "mil", "meses", "años", "de", "marzo", "gano",
              "@", "sol", "k", "dni", "😀", "ñ", "+51", "%", "y", "medio", "\n", "á", "#"]
    generator = random.Random(7)
    for _ in range(1000):
        text = "".join(generator.choice(pieces) for _ in range(generator.randint(0, 30)))
        for entity in parse(extractor, text).get(ENTITIES):
            assert 0 <= entity["start"] < entity["end"] <= len(text), text
            assert entity["confidence"] == 1.0 and entity["extractor"] == "SpanishValueExtractor"


def test_a_long_message_is_processed_whole(extractor: SpanishValueExtractor) -> None:
    text = ("quiero 5 mil a 12 meses, gano 3500 al mes, mi dni es 10117410. " * 80)[:5000]
    entities = parse(extractor, text).get(ENTITIES)
    assert len(entities) > 200
    assert {entity["entity"] for entity in entities} == {"amount", "term_months", "document_number"}


def test_phone_numbers_follow_the_configured_country(tmp_path: Path) -> None:
    storage = LocalModelStorage(tmp_path)
    context = ExecutionContext(GraphSchema({}), "test-model")
    chile = SpanishValueExtractor.create({"country": "CL"}, storage, Resource("values"), context)
    (message,) = chile.process([Message(data={TEXT: "mi celular es 9 8765 4321"})])
    assert [entity["value"] for entity in message.get(ENTITIES)] == ["+56987654321"]


def test_two_digit_years_are_judged_on_the_given_day() -> None:
    """Day-first dates with a 2-digit year take the century that does not put them in the future."""
    assert [entity["value"] for entity in extract_entities("04/12/26", today=date(2026, 12, 4))] == ["2026-12-04"]
    assert [entity["value"] for entity in extract_entities("04/12/26", today=date(2026, 12, 3))] == ["1926-12-04"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("le pago 300 el viernes", [("amount", "300", "300.00"), ("relative_date", "el viernes", "2026-12-11")]),
        ("el 15 pago 300", [("relative_date", "el 15", "2026-12-15"), ("amount", "300", "300.00")]),
        ("el 15 de este mes", [("relative_date", "el 15 de este mes", "2026-12-15")]),
        ("mañana en la mañana", [("relative_date", "mañana", "2026-12-05")]),
        ("a fin de mes", [("relative_date", "fin de mes", "2026-12-31")]),
        ("el 2 de enero", [("relative_date", "2 de enero", "2027-01-02")]),
        ("15 de diciembre de 2026", [("date", "15 de diciembre de 2026", "2026-12-15")]),
    ],
)
def test_promised_days_are_relative_dates(text: str, expected: list) -> None:
    entities = extract_entities(text, today=date(2026, 12, 4))
    assert [(entity["entity"], text[entity["start"]:entity["end"]], entity["value"]) for entity in entities] == expected


def test_relative_dates_count_from_the_day_in_lima(monkeypatch: pytest.MonkeyPatch) -> None:
    """At 9 p.m. in Lima a UTC server is already on the next day; "mañana" is the customer's tomorrow."""

    class NineAtNightInLima(datetime):
        @classmethod
        def now(cls, tz: Optional[tzinfo] = None) -> datetime:
            return datetime(2026, 12, 5, 2, 0, tzinfo=timezone.utc).astimezone(tz)

    monkeypatch.setattr(extractor_module, "datetime", NineAtNightInLima)
    assert [entity["value"] for entity in extract_entities("mañana")] == ["2026-12-05"]
    assert [entity["value"] for entity in extract_entities("hoy")] == ["2026-12-04"]


def test_the_component_tags_relative_dates(extractor: SpanishValueExtractor) -> None:
    assert "relative_date" in ENTITY_TYPES
    assert [(entity, words) for entity, words, _value, _role in tagged(extractor, "pago el viernes")] == [
        ("relative_date", "el viernes")
    ]


def test_an_unknown_country_fails_when_the_model_loads(tmp_path: Path) -> None:
    storage = LocalModelStorage(tmp_path)
    context = ExecutionContext(GraphSchema({}), "test-model")
    with pytest.raises(ValueError, match="unknown country"):
        SpanishValueExtractor.create({"country": "XX"}, storage, Resource("values"), context)


def test_the_recipe_runs_it_at_parse_time_only() -> None:
    """Registered as a non-trainable entity extractor: in the prediction graph, never over the training data
    (so DIET never learns its entities), and the graph validates with it in config.yml's place."""
    registered = DefaultV1Recipe._from_registry(COMPONENT)
    assert registered.clazz is SpanishValueExtractor
    assert DefaultV1Recipe.ComponentType.ENTITY_EXTRACTOR in registered.types
    assert not registered.is_trainable
    config = {
        "recipe": "default.v1",
        "language": "es",
        "pipeline": [{"name": "WhitespaceTokenizer"}, {"name": COMPONENT, "country": "PE"}],
        "policies": [],
    }
    graph = DefaultV1Recipe().graph_config_for_recipe(config, {}, training_type=TrainingType.NLU)
    validation.validate(graph)
    assert [node.fn for node in graph.predict_schema.nodes.values() if node.uses is SpanishValueExtractor] == [
        "process"
    ]
    assert all(node.uses is not SpanishValueExtractor for node in graph.train_schema.nodes.values())


@pytest.mark.parametrize(
    ("text", "months"),
    [("hace 3 años", "36"), ("llevo 8 meses trabajando", "8"), ("2 años de antigüedad", "24"),
     ("trabajo en planilla hace año y medio", "18")],
)
def test_time_in_a_job_is_a_term_with_the_tenure_role(text: str, months: str) -> None:
    [entity] = extract_entities(text)
    assert (entity["entity"], entity["value"], entity["role"]) == ("term_months", months, "tenure")


def test_a_loan_term_has_no_tenure_role() -> None:
    [entity] = extract_entities("lo quiero a 3 años")
    assert entity["entity"] == "term_months" and "role" not in entity
