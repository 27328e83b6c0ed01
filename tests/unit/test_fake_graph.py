"""The fake WhatsApp Cloud API as a real process: it accepts what Meta accepts and refuses the rest like Meta."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
import requests

from credia.processes import ManagedProcess, free_port
from credia.settings import PROJECT_ROOT

ACCESS_TOKEN = "test-access-token"
PHONE_NUMBER_ID = "105550001112223"
CUSTOMER = "51987654321"


@dataclass
class FakeGraph:
    """A running ``python -m credia.channels.fake_graph`` and its test-control API."""

    port: int
    process: ManagedProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def graph_url(self) -> str:
        """What the connector is configured with (base URL and version)."""
        return f"{self.url}/v23.0"

    def send(self, body: Any, token: Optional[str] = ACCESS_TOKEN, phone_number_id: str = PHONE_NUMBER_ID
             ) -> requests.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return requests.post(f"{self.graph_url}/{phone_number_id}/messages", json=body, headers=headers, timeout=10)

    def messages(self, to: Optional[str] = None, status: Optional[str] = None) -> List[Dict[str, Any]]:
        params = {key: value for key, value in {"to": to, "status": status}.items() if value}
        response = requests.get(f"{self.url}/_test/messages", params=params, timeout=10)
        response.raise_for_status()
        return response.json()

    def fail_next(self, code: int, count: int = 1, to: Optional[str] = None) -> None:
        body = {"code": code, "count": count, **({"to": to} if to else {})}
        requests.post(f"{self.url}/_test/failures", json=body, timeout=10).raise_for_status()

    def set_window(self, recipient: str, open_: bool) -> None:
        requests.put(f"{self.url}/_test/windows/{recipient}", json={"open": open_}, timeout=10).raise_for_status()

    def reset(self) -> None:
        requests.delete(f"{self.url}/_test/messages", timeout=10).raise_for_status()
        requests.delete(f"{self.url}/_test/control", timeout=10).raise_for_status()


def start_fake_graph(directory: Path) -> FakeGraph:
    port = free_port()
    process = ManagedProcess(
        name="whatsapp-graph",
        command=[sys.executable, "-m", "credia.channels.fake_graph", "--port", str(port)],
        health_url=f"http://127.0.0.1:{port}/health",
        env={"WHATSAPP_ACCESS_TOKEN": ACCESS_TOKEN, "WHATSAPP_PHONE_NUMBER_ID": PHONE_NUMBER_ID},
        log_path=directory / "fake_graph.log",
        cwd=PROJECT_ROOT,
    )
    process.start()
    try:
        process.wait_healthy(timeout=30)
    except Exception:
        process.stop()
        raise
    return FakeGraph(port, process)


@pytest.fixture(scope="module")
def graph(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeGraph]:
    fake = start_fake_graph(tmp_path_factory.mktemp("fake_graph"))
    try:
        yield fake
    finally:
        fake.process.stop()


@pytest.fixture(autouse=True)
def clean(graph: FakeGraph) -> None:
    graph.reset()


def text(body: str, to: str = CUSTOMER) -> Dict[str, Any]:
    return {"messaging_product": "whatsapp", "to": to, "type": "text", "text": {"body": body}}


def buttons(titles: List[str], body: str = "¿Qué desea hacer?", ids: Optional[List[str]] = None) -> Dict[str, Any]:
    ids = ids or [f"/opcion_{n}" for n in range(len(titles))]
    return {
        "messaging_product": "whatsapp", "to": CUSTOMER, "type": "interactive",
        "interactive": {"type": "button", "body": {"text": body}, "action": {"buttons": [
            {"type": "reply", "reply": {"id": id_, "title": title}} for id_, title in zip(ids, titles)
        ]}},
    }


def list_of(rows: List[Dict[str, str]], button: str = "Ver opciones", body: str = "Elija un crédito") -> Dict[str, Any]:
    return {
        "messaging_product": "whatsapp", "to": CUSTOMER, "type": "interactive",
        "interactive": {"type": "list", "body": {"text": body},
                        "action": {"button": button, "sections": [{"rows": rows}]}},
    }


def template(parameter: str, name: str = "credia_aviso") -> Dict[str, Any]:
    return {
        "messaging_product": "whatsapp", "to": CUSTOMER, "type": "template",
        "template": {"name": name, "language": {"code": "es"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": parameter}]}]},
    }


def error_of(response: requests.Response) -> Dict[str, Any]:
    error = response.json()["error"]
    assert {"message", "type", "code", "error_subcode", "fbtrace_id"} <= set(error), error
    return error


def test_health(graph: FakeGraph) -> None:
    assert requests.get(f"{graph.url}/health", timeout=5).json() == {"status": "ok"}


def test_accepts_a_valid_text_and_records_it(graph: FakeGraph) -> None:
    response = graph.send(text("¡Hola! ¿En qué le ayudo? 😊"))
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["messaging_product"] == "whatsapp"
    assert data["contacts"] == [{"input": CUSTOMER, "wa_id": CUSTOMER}]
    assert data["messages"][0]["id"].startswith("wamid.")
    [recorded] = graph.messages(to=CUSTOMER)
    assert recorded["status"] == "accepted" and recorded["id"] == data["messages"][0]["id"]
    assert recorded["message"]["text"]["body"] == "¡Hola! ¿En qué le ayudo? 😊"


def test_messages_are_listed_newest_last_and_cleared(graph: FakeGraph) -> None:
    for n in range(3):
        graph.send(text(f"mensaje {n}"))
    graph.send(text("a otra persona", to="51900000001"))
    assert [m["message"]["text"]["body"] for m in graph.messages(to=CUSTOMER)] == [f"mensaje {n}" for n in range(3)]
    assert len(graph.messages()) == 4
    newer = requests.get(f"{graph.url}/_test/messages", params={"after": 2}, timeout=5).json()
    assert [m["to"] for m in newer] == [CUSTOMER, "51900000001"]  # incremental polling skips what was read
    requests.delete(f"{graph.url}/_test/messages", timeout=5).raise_for_status()
    assert graph.messages() == []


def test_bearer_token_and_phone_number_id_are_checked(graph: FakeGraph) -> None:
    for token in (None, "wrong"):
        response = graph.send(text("hola"), token=token)
        assert response.status_code == 401
        assert error_of(response)["code"] == 190
    response = graph.send(text("hola"), phone_number_id="999")
    assert response.status_code == 400 and response.json()["error"]["code"] == 100
    assert graph.messages() == []


@pytest.mark.parametrize(
    "body, code",
    [
        ({"to": CUSTOMER, "type": "text", "text": {"body": "hola"}}, 100),  # no messaging_product
        ({"messaging_product": "whatsapp", "type": "text", "text": {"body": "hola"}}, 100),  # no recipient
        ({"messaging_product": "whatsapp", "to": "no-es-un-numero", "type": "text", "text": {"body": "x"}}, 100),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "fax", "text": {"body": "hola"}}, 100),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "text"}, 131008),
        ({"messaging_product": "whatsapp", "to": CUSTOMER, "type": "image", "image": {"link": "ftp://x"}}, 131008),
        (["not", "an", "object"], 131008),
    ],
)
def test_envelope_errors(graph: FakeGraph, body: Any, code: int) -> None:
    response = graph.send(body)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == code and error["message"].startswith(f"(#{code})")
    assert graph.messages()[-1]["status"] == "rejected"


def test_text_limit(graph: FakeGraph) -> None:
    assert graph.send(text("a" * 4096)).status_code == 200
    response = graph.send(text("a" * 4097))
    assert response.status_code == 400 and "4096" in error_of(response)["error_data"]["details"]


def test_reply_button_limits(graph: FakeGraph) -> None:
    assert graph.send(buttons(["Ver créditos", "Mi deuda", "Hablar con asesor"])).status_code == 200
    broken = [
        buttons(["Uno", "Dos", "Tres", "Cuatro"]),  # more than 3
        buttons([]),  # none
        buttons(["Hablar con una persona"]),  # title of 22
        buttons(["Igual", "Igual"]),  # titles not distinct
        buttons(["Uno"], ids=["x" * 257]),  # id over 256
        buttons(["Uno"], body="b" * 1025),  # body over 1,024
        buttons(["Uno"], body=""),  # empty body
    ]
    for body in broken:
        response = graph.send(body)
        assert response.status_code == 400, body
        assert error_of(response)["code"] in (131009, 131008), response.text
    assert graph.send(buttons(["Uno"], ids=["x" * 256], body="b" * 1024)).status_code == 200


def test_list_limits(graph: FakeGraph) -> None:
    rows = [{"id": f"/producto_{n}", "title": f"Producto {n}", "description": "d" * 72} for n in range(10)]
    assert graph.send(list_of(rows)).status_code == 200
    broken = [
        list_of(rows + [{"id": "/once", "title": "Once"}]),  # 11 rows
        list_of([{"id": "/x", "title": "t" * 25}]),  # row title over 24
        list_of([{"id": "/x", "title": "Uno", "description": "d" * 73}]),  # description over 72
        list_of([{"id": "i" * 201, "title": "Uno"}]),  # row id over 200
        list_of([{"id": "/x", "title": "Uno"}], button="b" * 21),  # button label over 20
        list_of([{"id": "/x", "title": "Uno"}, {"id": "/x", "title": "Dos"}]),  # ids not distinct
        list_of([]),  # no rows
    ]
    for body in broken:
        response = graph.send(body)
        assert response.status_code == 400, body
        assert error_of(response)["code"] in (131009, 131008), response.text


def test_template_shape(graph: FakeGraph) -> None:
    response = graph.send(template("Su pago de S/ 150.00 fue registrado."))
    assert response.status_code == 200 and response.json()["messages"][0]["message_status"] == "accepted"
    assert error_of(graph.send(template("x", name="Not A Name")))["code"] == 132001
    assert error_of(graph.send(template("línea 1\nlínea 2")))["code"] == 132018
    assert error_of(graph.send(template("muchos     espacios")))["code"] == 132018
    no_language = template("x")
    del no_language["template"]["language"]
    assert graph.send(no_language).status_code == 400


def test_business_scoped_user_id_as_recipient(graph: FakeGraph) -> None:
    body = {"messaging_product": "whatsapp", "recipient": "PE.1349120865530274", "type": "text",
            "text": {"body": "hola"}}
    response = graph.send(body)
    assert response.status_code == 200, response.text
    assert response.json()["contacts"][0]["user_id"] == "PE.1349120865530274"
    assert graph.messages(to="PE.1349120865530274")[0]["status"] == "accepted"


def test_closed_window_refuses_free_text_but_not_templates(graph: FakeGraph) -> None:
    graph.set_window(CUSTOMER, open_=False)
    response = graph.send(text("hola"))
    assert response.status_code == 400 and error_of(response)["code"] == 131047
    assert graph.send(template("Tenemos novedades sobre su solicitud.")).status_code == 200
    assert graph.send(text("hola", to="51900000002")).status_code == 200
    graph.set_window(CUSTOMER, open_=True)
    assert graph.send(text("hola")).status_code == 200


def test_queued_failures_per_recipient(graph: FakeGraph) -> None:
    graph.fail_next(130429, count=2, to=CUSTOMER)
    assert graph.send(text("a otra", to="51900000003")).status_code == 200
    first, second = graph.send(text("uno")), graph.send(text("dos"))
    assert first.status_code == second.status_code == 429
    assert error_of(first)["code"] == 130429
    assert graph.send(text("tres")).status_code == 200
    graph.fail_next(131000)
    assert graph.send(text("cuatro")).status_code == 500
    graph.fail_next(131026)
    assert error_of(graph.send(text("cinco")))["code"] == 131026
    statuses = [m["status"] for m in graph.messages(to=CUSTOMER)]
    assert statuses == ["rejected", "rejected", "accepted", "rejected", "rejected"]
    assert requests.post(f"{graph.url}/_test/failures", json={"code": 12345}, timeout=5).status_code == 422
