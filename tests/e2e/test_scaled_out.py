"""End to end on the scaled-out profile: two Rasa servers and two action servers behind the balancer, every store
on this machine's PostgreSQL, Redis (lock store) and RabbitMQ (event broker feeding the metrics store).

Also the fault injection: killing one Rasa server, one action server or core banking while customers talk.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Iterator

import aio_pika
import pytest
import requests
import yaml

from credia.analytics.metrics import build_report
from credia.channels.whatsapp import signature_of
from credia.launcher import build_processes, start_all, stop_all
from credia.processes import ManagedProcess
from credia.scaleout import DEFAULT_POSTGRES_URL, DEFAULT_RABBITMQ_URL, DEFAULT_REDIS_URL, Topology
from credia.settings import PROJECT_ROOT
from tests.e2e.conftest import free_ports
from tests.e2e.test_whatsapp_journey import WhatsAppCustomer, body_of

pytestmark = pytest.mark.e2e

CONVERSATIONS = 50
ROSA = {"dni": "40236715", "born": "21/07/1990"}  # 31-60 days late; the cluster's core banking is its own
UNAVAILABLE = "nuestro sistema no está respondiendo"
LINK = re.compile(r"https?://\S+/pay/(lnk_[0-9a-f]+)")
RESPONSES = yaml.safe_load((PROJECT_ROOT / "domain.yml").read_text())["responses"]


def variants(response: str) -> set[str]:
    return {variant["text"] for variant in RESPONSES[response]}


# Each message with what its reply must be: one of the response's texts, or a fragment the reply contains.
SCRIPT = [
    ("buenos dias", variants("utter_greet")),
    ("eres un robot?", variants("utter_iamabot")),
    ("que creditos tienen disponibles", "créditos que ofrecemos"),
    ("muchas gracias", variants("utter_youre_welcome")),
]


def reply_matches(texts: list[str], expected: set[str] | str) -> bool:
    joined = "\n".join(texts)
    return expected in joined if isinstance(expected, str) else bool(set(texts) & expected)


@dataclass
class Cluster:
    processes: dict[str, ManagedProcess]
    topology: Topology
    public_url: str

    def url(self, name: str) -> str:
        return self.processes[name].health_url.rstrip("/")

    @property
    def token(self) -> str:
        return self.processes["rasa-1"].env["RASA_AUTH_TOKEN"]

    def replies(self, base_url: str, sender: str, message: str, attempts: int = 1) -> list[dict]:
        """The bot's replies; ``attempts`` > 1 retries a refused or failed request as a channel provider does."""
        for attempt in range(attempts):
            try:
                response = requests.post(
                    f"{base_url}/webhooks/rest/webhook", json={"sender": sender, "message": message}, timeout=120
                )
                if response.status_code < 500:
                    response.raise_for_status()
                    return response.json()
            except requests.ConnectionError:
                if attempt == attempts - 1:
                    raise
            time.sleep(1.0)
        raise AssertionError(f"{message!r} from {sender} got no answer after {attempts} attempts")

    def send(self, base_url: str, sender: str, message: str, attempts: int = 1) -> list[str]:
        return [reply.get("text", "") for reply in self.replies(base_url, sender, message, attempts)]

    def core(self, path: str) -> Any:
        response = requests.get(self.processes["core-banking"].health_url.rsplit("/", 1)[0] + path, timeout=10)
        response.raise_for_status()
        return response.json()

    def tracker(self, base_url: str, sender: str) -> dict:
        response = requests.get(
            f"{base_url}/conversations/{sender}/tracker", params={"token": self.token}, timeout=30
        )
        response.raise_for_status()
        return response.json()


async def _delete_rabbitmq_objects(topology: Topology) -> None:
    connection = await aio_pika.connect_robust(topology.rabbitmq_url)
    async with connection:
        channel = await connection.channel()
        await channel.queue_delete(topology.events_queue)
        await channel.exchange_delete(topology.events_exchange)


@pytest.fixture(scope="module")
def cluster(model: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    topology = Topology(
        postgres_url=DEFAULT_POSTGRES_URL,
        redis_url=DEFAULT_REDIS_URL,
        rabbitmq_url=DEFAULT_RABBITMQ_URL,
        prefix=f"credia_t{secrets.token_hex(4)}",
        rasa_instances=2,
        action_instances=2,
    )
    ports = free_ports()
    processes = build_processes(model, tmp_path_factory.mktemp("scaled") / "var", ports, topology)
    try:
        start_all(processes)
        yield Cluster(processes, topology, f"http://127.0.0.1:{ports.rasa}")
    finally:
        stop_all(processes)
        topology.drop_databases()
        asyncio.run(_delete_rabbitmq_objects(topology))


def user_and_bot_texts(tracker: dict) -> list[tuple[str, list[str]]]:
    """Each customer message of the conversation with the bot's texts that followed it, in stored order."""
    turns: list[tuple[str, list[str]]] = []
    for event in tracker["events"]:
        if event["event"] == "user":
            turns.append((event["text"], []))
        elif event["event"] == "bot" and turns:
            turns[-1][1].append(event.get("text") or "")
    return turns


def test_two_rasa_servers_share_the_stores_and_answer_every_message_in_order(cluster: Cluster) -> None:
    servers = [cluster.url("rasa-1"), cluster.url("rasa-2")]
    replies: dict[str, list[list[str]]] = {}

    def converse(number: int) -> None:
        sender = f"scale-{number}"
        replies[sender] = [
            # Message i of conversation n goes to server (n + i) % 2: every conversation alternates.
            cluster.send(servers[(number + index) % 2], sender, message)
            for index, (message, _) in enumerate(SCRIPT)
        ]

    with ThreadPoolExecutor(max_workers=CONVERSATIONS) as pool:
        list(pool.map(converse, range(CONVERSATIONS)))

    for sender, answers in replies.items():
        for (message, expected), texts in zip(SCRIPT, answers):
            assert reply_matches(texts, expected), f"{sender}: {message!r} answered {texts!r}"
        # Either server returns the whole conversation, in order, each message with exactly its reply.
        for server in servers:
            turns = user_and_bot_texts(cluster.tracker(server, sender))
            assert [text for text, _ in turns] == [message for message, _ in SCRIPT], sender
            assert [texts for _, texts in turns] == answers, sender


def test_the_lock_store_serialises_one_conversation_across_servers(cluster: Cluster) -> None:
    """Two messages of one customer reach both servers at the same time: both are answered, neither interleaves."""
    servers = [cluster.url("rasa-1"), cluster.url("rasa-2")]
    sender = f"scale-lock-{secrets.token_hex(3)}"
    cluster.send(servers[0], sender, "buenos dias")
    with ThreadPoolExecutor(max_workers=2) as pool:
        first, second = pool.map(
            lambda pair: cluster.send(pair[0], sender, pair[1]),
            [(servers[0], "eres un robot?"), (servers[1], "muchas gracias")],
        )
    turns = user_and_bot_texts(cluster.tracker(servers[1], sender))
    assert sorted(text for text, _ in turns[1:]) == ["eres un robot?", "muchas gracias"]
    by_message = dict(turns)
    assert by_message["eres un robot?"] == first and set(first) & variants("utter_iamabot")
    assert by_message["muchas gracias"] == second and set(second) & variants("utter_youre_welcome")


def test_a_whatsapp_message_delivered_to_both_servers_is_answered_once(cluster: Cluster) -> None:
    """Meta retries a delivery; behind a balancer the copies can reach different servers at the same time."""
    servers = [cluster.url("rasa-1"), cluster.url("rasa-2")]
    customer = WhatsAppCustomer(SimpleNamespace(processes={"rasa": cluster.processes["rasa-1"]}, rasa_url=servers[0]))
    body = customer.notification("text", {"body": "buenos dias"})
    headers = {"Content-Type": "application/json", "X-Hub-Signature-256": signature_of(customer.secret, body)}
    with ThreadPoolExecutor(max_workers=4) as pool:
        statuses = list(pool.map(
            lambda server: requests.post(f"{server}/webhooks/whatsapp/webhook", data=body, headers=headers,
                                         timeout=30).status_code,
            servers * 2,
        ))
    assert statuses == [200] * 4
    customer.wait_for(lambda message: "Credia" in body_of(message), after=0)
    time.sleep(3)  # time enough for a duplicate answer to arrive, had a copy been processed twice
    assert len([message for message in customer.received() if "Credia" in body_of(message)]) == 1


def test_the_balancer_shares_the_load_and_the_metrics_store_gets_every_event(cluster: Cluster) -> None:
    for number in range(6):
        assert reply_matches(
            cluster.send(cluster.public_url, f"scale-lb-{number}", "buenos dias"), variants("utter_greet")
        )
    shares = requests.get(cluster.processes["balancer"].health_url, timeout=5).json()
    rasa_share = next(iter(share for share in shares.values() if len(share) == 2))
    assert all(count >= 3 for count in rasa_share.values()), shares

    # The reminder scheduler may write to customers meanwhile: compare when both stores have stopped changing.
    def reports() -> tuple[dict, dict]:
        return (build_report(cluster.topology.database_url("tracker")),
                build_report(cluster.topology.database_url("analytics")))

    tracker_report, metrics_report = reports()
    deadline = time.monotonic() + 60
    while metrics_report != tracker_report and time.monotonic() < deadline:
        time.sleep(1)
        tracker_report, metrics_report = reports()
    assert metrics_report == tracker_report


def test_killing_one_rasa_server_and_one_action_server_loses_no_conversation(cluster: Cluster) -> None:
    """Customers keep talking through the balancer while a Rasa server and an action server are killed and
    restarted; a request cut by the crash is retried as a channel provider would."""
    stop = threading.Event()
    answered: dict[str, list[list[str]]] = {}

    def converse(number: int) -> None:
        sender = f"scale-fault-{number}"
        answered[sender] = []
        for message, _ in SCRIPT * 2:
            answered[sender].append(cluster.send(cluster.public_url, sender, message, attempts=30))
            if stop.is_set():
                return

    with ThreadPoolExecutor(max_workers=10) as pool:
        futures = [pool.submit(converse, number) for number in range(10)]
        time.sleep(3)
        cluster.processes["rasa-1"].kill()
        cluster.processes["actions-2"].kill()
        time.sleep(5)
        cluster.processes["actions-2"].start()
        cluster.processes["rasa-1"].start()
        for future in futures:
            future.result(timeout=600)
    cluster.processes["rasa-1"].wait_healthy(300)
    cluster.processes["actions-2"].wait_healthy(90)

    for sender, answers in answered.items():
        assert len(answers) == len(SCRIPT) * 2, sender
        for (message, expected), texts in zip(SCRIPT * 2, answers):
            assert reply_matches(texts, expected), f"{sender}: {message!r} answered {texts!r}"
        turns = user_and_bot_texts(cluster.tracker(cluster.url("rasa-1"), sender))
        stored = [text for text, _ in turns]
        # Every message is stored, in order; one cut by the crash may have been stored before the retry.
        deduplicated = [text for index, text in enumerate(stored) if index == 0 or text != stored[index - 1]]
        assert deduplicated == [message for message, _ in SCRIPT * 2], sender


def test_restarting_processes_mid_journey_duplicates_no_plan_and_no_link(cluster: Cluster) -> None:
    """Core banking down: a polite answer, and the journey goes on when it is back; a Rasa server, the payments
    service and an action server restarted around the plan's confirmation and the link: one plan, one link."""
    sender = f"scale-rosa-{secrets.token_hex(3)}"

    def say(message: str) -> str:
        return "\n".join(cluster.send(cluster.public_url, sender, message, attempts=30))

    say("buenas, necesito refinanciar mi deuda")
    say(ROSA["dni"])
    assert "Verifiqué su identidad" in say(ROSA["born"])
    offers = cluster.replies(cluster.public_url, sender, "quiero un plan de pagos")
    choice = next(button["payload"] for reply in offers for button in reply.get("buttons") or []
                  if "3 cuotas" in button["title"])

    core_banking = cluster.processes["core-banking"]
    core_banking.kill()
    try:
        assert UNAVAILABLE in say(choice)
    finally:
        core_banking.start()
        core_banking.wait_healthy(60)
    assert "¿Confirma este acuerdo?" in say(choice)

    cluster.processes["rasa-1"].kill()
    accepted = say("sí, confirmo")
    assert "Registré su plan de pagos" in accepted
    cluster.processes["rasa-1"].start()
    payments = cluster.processes["payments"]
    payments.stop()
    payments.start()
    payments.wait_healthy(60)
    say("sí, confirmo")  # a confirmation repeated after the restarts stores nothing more
    first = say("mándeme el link de pago")
    cluster.processes["actions-1"].kill()
    again = say("mándeme el link de pago otra vez")
    cluster.processes["actions-1"].start()

    [customer] = cluster.core(f"/customers?document_type=DNI&document_number={ROSA['dni']}")
    [loan] = cluster.core(f"/customers/{customer['id']}/loans")
    plans = [plan for plan in cluster.core(f"/loans/{loan['id']}/payment-plans") if plan["status"] == "active"]
    assert len(plans) == 1
    assert LINK.search(accepted) and LINK.search(first) and LINK.search(again)
    assert LINK.search(first).group(1) == LINK.search(again).group(1)
    payments_url = cluster.processes["payments"].health_url.rsplit("/", 1)[0]
    pending = requests.get(f"{payments_url}/links", params={"customer_id": customer["id"], "status": "pending"},
                           timeout=10).json()
    amounts = [link["amount"] for link in pending if link["loan_id"] == str(loan["id"])]
    assert amounts and len(amounts) == len(set(amounts)), pending  # never two pending links for one amount
    cluster.processes["rasa-1"].wait_healthy(300)
    cluster.processes["actions-1"].wait_healthy(90)
