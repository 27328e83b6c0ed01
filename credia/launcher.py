"""Start every process of the assistant, wait until each is healthy, and stop them all on Ctrl-C.

This is what `./assistant start` runs. The processes, in start order:
core-banking mock, payments mock, action server, Rasa server (every channel of credentials.yml).
The fake WhatsApp Cloud API starts with them unless ``WHATSAPP_GRAPH_URL`` points at another Graph API.
The fake Twilio API starts with them unless ``TWILIO_API_URL`` points at Twilio (or another one).
The reminder scheduler (``credia.reminders``) starts with them and writes to customers through Rasa.
The agent desk (``credia.desk``) starts with them; the banner prints its demo logins for this run.
The WhatsApp ingress gateway (``credia.channels.whatsapp_gateway``) starts with them: Meta calls it, it relays to Rasa.
The tests build the same processes with ``build_processes`` so they run exactly what a user runs.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from credia import settings
from credia.processes import ManagedProcess, free_port, port_is_open
from credia.scaleout import Topology

STARTUP_TIMEOUT = {"core-banking": 60, "payments": 60, "actions": 90, "rasa": 300}
STARTUP_TIMEOUT["whatsapp-graph"] = 30
STARTUP_TIMEOUT["fake-twilio"] = 30
STARTUP_TIMEOUT["reminders"] = 30
STARTUP_TIMEOUT["desk"] = 30
STARTUP_TIMEOUT["whatsapp-gateway"] = 30
STARTUP_TIMEOUT["balancer"] = 30
STARTUP_TIMEOUT["metrics-consumer"] = 30


RASA_NICENESS = 5
MAX_RESTARTS = 5
RESTART_WINDOW = 120.0


def startup_timeout(name: str) -> float:
    """Seconds a process may take to become healthy; instances (``rasa-2``) take their kind's."""
    return STARTUP_TIMEOUT[_kind_and_instance(name)[0]]


@dataclass(frozen=True)
class Ports:
    core_banking: int = 8001
    payments: int = 8002
    actions: int = 5055
    rasa: int = 5005
    whatsapp_graph: int = 0  # the fake WhatsApp Cloud API; 0: a free port
    twilio: int = 0  # the fake Twilio API; 0: a free port
    reminders: int = 0  # the reminder scheduler's API; 0: a free port
    desk: int = 0  # the agent desk; 0: a free port
    whatsapp_gateway: int = 0  # the WhatsApp ingress gateway Meta calls; 0: a free port

    @classmethod
    def from_env(cls) -> "Ports":
        return cls(
            core_banking=settings.env_int("CORE_BANKING_PORT", cls.core_banking),
            payments=settings.env_int("PAYMENTS_PORT", cls.payments),
            actions=settings.env_int("ACTIONS_PORT", cls.actions),
            rasa=settings.env_int("RASA_PORT", cls.rasa),
            whatsapp_graph=settings.env_int("WHATSAPP_GRAPH_PORT", 0) or free_port(),
            twilio=settings.env_int("TWILIO_FAKE_PORT", 0) or free_port(),
            reminders=settings.env_int("REMINDERS_PORT", 8004),
            desk=settings.env_int("DESK_PORT", 8003),
            whatsapp_gateway=settings.env_int("WHATSAPP_GATEWAY_PORT", 8005) or free_port(),
        )


def write_endpoints(var_dir: Path, ports: Ports, topology: Topology = Topology()) -> Path:
    """Write the endpoints file of this run: the project's endpoints.yml with this run's port and paths, and the
    shared stores of the scaled-out profile.

    ``RASA_ENDPOINTS`` names a complete endpoints file to use instead.
    """
    if os.environ.get("RASA_ENDPOINTS"):
        return Path(os.environ["RASA_ENDPOINTS"])
    config = topology.endpoints(yaml.safe_load((settings.PROJECT_ROOT / "endpoints.yml").read_text()))
    config["action_endpoint"]["url"] = f"http://127.0.0.1:{ports.actions}/webhook"
    # Rasa fills in the token from its environment: the action server answers nobody else, and it is not on disk.
    config["action_endpoint"]["headers"] = {"Authorization": "Bearer ${ACTION_SERVER_TOKEN}"}
    tracker = config.get("tracker_store", {})
    if tracker.get("dialect") == "sqlite":
        tracker["db"] = str(var_dir / "rasa_tracker.db")
    path = var_dir / "run" / "endpoints.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def run_secrets(var_dir: Path) -> dict[str, str]:
    """Secrets from the environment, or fresh random ones for this run (never stored in the repository)."""
    values = {
        "PAYMENTS_WEBHOOK_SECRET": os.environ.get("PAYMENTS_WEBHOOK_SECRET") or secrets.token_hex(32),
        "RASA_AUTH_TOKEN": os.environ.get("RASA_AUTH_TOKEN") or secrets.token_urlsafe(24),
        # Signs web chat links that continue a conversation from another channel (credia/channels/links.py).
        "CONVERSATION_LINK_SECRET": os.environ.get("CONVERSATION_LINK_SECRET") or secrets.token_hex(32),
        # Protects the reminder scheduler's audit API (credia/reminders/api.py).
        "REMINDERS_API_TOKEN": os.environ.get("REMINDERS_API_TOKEN") or secrets.token_urlsafe(24),
        # Only Rasa may call the action server (credia/action_server.py).
        "ACTION_SERVER_TOKEN": os.environ.get("ACTION_SERVER_TOKEN") or secrets.token_urlsafe(24),
    }
    token_file = var_dir / "run" / "rasa_token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text(values["RASA_AUTH_TOKEN"])
    token_file.chmod(0o600)
    reminders_token_file = var_dir / "run" / "reminders_token"
    reminders_token_file.write_text(values["REMINDERS_API_TOKEN"])
    reminders_token_file.chmod(0o600)
    return values


FAKE_GRAPH_VERSION = "v23.0"


def whatsapp_graph_port(ports: Ports) -> int | None:
    """Port of the run's fake WhatsApp Cloud API; ``None`` when ``WHATSAPP_GRAPH_URL`` names another Graph API."""
    return None if os.environ.get("WHATSAPP_GRAPH_URL") else ports.whatsapp_graph or free_port()


def whatsapp_env(graph_port: int | None) -> dict[str, str]:
    """The WhatsApp connector's settings: secrets from the environment or random per run, this run's fake API."""
    return {
        "WHATSAPP_GRAPH_URL": os.environ.get("WHATSAPP_GRAPH_URL")
        or f"http://127.0.0.1:{graph_port}/{FAKE_GRAPH_VERSION}",
        "WHATSAPP_APP_SECRET": os.environ.get("WHATSAPP_APP_SECRET") or secrets.token_hex(32),
        "WHATSAPP_VERIFY_TOKEN": os.environ.get("WHATSAPP_VERIFY_TOKEN") or secrets.token_urlsafe(24),
        "WHATSAPP_ACCESS_TOKEN": os.environ.get("WHATSAPP_ACCESS_TOKEN") or secrets.token_urlsafe(32),
        "WHATSAPP_PHONE_NUMBER_ID": settings.env("WHATSAPP_PHONE_NUMBER_ID", "100000000000001"),
    }


def twilio_fake_port(ports: Ports) -> int | None:
    """Port of the run's fake Twilio API; ``None`` when ``TWILIO_API_URL`` names Twilio or another API."""
    return None if os.environ.get("TWILIO_API_URL") else ports.twilio or free_port()


def twilio_env(fake_port: int | None) -> dict[str, str]:
    """The Twilio channels' account: from the environment, or a random one per run for the fake Twilio API."""
    return {
        "TWILIO_API_URL": os.environ.get("TWILIO_API_URL") or f"http://127.0.0.1:{fake_port}",
        "TWILIO_ACCOUNT_SID": os.environ.get("TWILIO_ACCOUNT_SID") or "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": os.environ.get("TWILIO_AUTH_TOKEN") or secrets.token_hex(32),
    }


DESK_LOGINS = (("supervisor", "DESK_SUPERVISOR_PASSWORD"), ("agente1", "DESK_AGENT_PASSWORD"),
               ("agente2", "DESK_AGENT_PASSWORD"))


def desk_env(var_dir: Path, ports: Ports, desk_port: int) -> dict[str, str]:
    """The agent desk's settings: its store, this run's Rasa, and secrets from the environment or random per run.

    The demo logins are also written to ``var/run/desk_logins`` (readable by the owner only) for the banner."""
    values = {
        "DESK_PORT": str(desk_port),
        "DESK_DATABASE_URL": settings.env("DESK_DATABASE_URL", f"sqlite:///{var_dir / 'desk.db'}"),
        # The supervisors' dashboard reads the metrics from this run's tracker store (or the one given).
        "DESK_TRACKER_DB": settings.env("DESK_TRACKER_DB", f"sqlite:///{var_dir / 'rasa_tracker.db'}"),
        "RASA_URL": f"http://127.0.0.1:{ports.rasa}",
        "DESK_API_TOKEN": os.environ.get("DESK_API_TOKEN") or secrets.token_urlsafe(24),
        "DESK_SUPERVISOR_PASSWORD": os.environ.get("DESK_SUPERVISOR_PASSWORD") or secrets.token_urlsafe(12),
        "DESK_AGENT_PASSWORD": os.environ.get("DESK_AGENT_PASSWORD") or secrets.token_urlsafe(12),
    }
    logins = var_dir / "run" / "desk_logins"
    logins.parent.mkdir(parents=True, exist_ok=True)
    logins.write_text("".join(f"{user} {values[variable]}\n" for user, variable in DESK_LOGINS))
    logins.chmod(0o600)
    return values


def _desk_banner(ports: Ports, var_dir: Path) -> str:
    """Where agents log in, and this run's demo logins (user and password)."""
    logins = (var_dir / "run" / "desk_logins").read_text().split()
    pairs = ", ".join(f"{user} / {password}" for user, password in zip(logins[::2], logins[1::2]))
    return (f"  agent desk         http://127.0.0.1:{ports.desk}/console   (metrics: /console/metrics; "
            f"logins this run: {pairs})")


def build_processes(
    model: Path, var_dir: Path, ports: Ports, topology: Topology | None = None
) -> dict[str, ManagedProcess]:
    """The assistant's processes, wired to each other through ports and environment variables.

    In the scaled-out profile (``credia.scaleout``) the stores are shared servers, and ``rasa``/``actions`` become
    several instances (``rasa-1``, ``rasa-2``...) behind a ``balancer`` listening on the usual ports.
    """
    topology = topology or Topology.from_env()
    python = sys.executable
    logs = var_dir / "log"
    graph_port = whatsapp_graph_port(ports)
    twilio_port = twilio_fake_port(ports)
    reminders_port = ports.reminders or free_port()
    desk_port = ports.desk or free_port()
    gateway_port = ports.whatsapp_gateway or free_port()
    desk = desk_env(var_dir, ports, desk_port)
    if topology.scaled:
        # The supervisors' dashboard reads the metrics store that RabbitMQ feeds, not the conversations' store.
        desk.update(DESK_DATABASE_URL=topology.database_url("desk"), DESK_TRACKER_DB=topology.database_url("analytics"))
    env = {
        "CREDIA_VAR_DIR": str(var_dir),
        "CORE_BANKING_URL": f"http://127.0.0.1:{ports.core_banking}",
        "PAYMENTS_URL": f"http://127.0.0.1:{ports.payments}",
        "CORE_BANKING_PORT": str(ports.core_banking),
        "PAYMENTS_PORT": str(ports.payments),
        # Paid links are announced in the customer's conversation, after core banking applied them.
        "PAYMENTS_ASSISTANT_WEBHOOK_URL": f"http://127.0.0.1:{ports.rasa}/webhooks/payment_events/webhook",
        # The reminder scheduler says its reminders through Rasa's HTTP API, and serves its audit on this port.
        "RASA_URL": f"http://127.0.0.1:{ports.rasa}",
        "REMINDERS_PORT": str(reminders_port),
        # The assistant hands conversations to this run's agent desk, with the desk's service-API token.
        "DESK_URL": f"http://127.0.0.1:{desk_port}",
        "DESK_API_TOKEN": desk["DESK_API_TOKEN"],
        # Where signed web chat links point: the public address when one is set, else this run's Rasa server.
        "WEBCHAT_PUBLIC_URL": settings.env("WEBCHAT_PUBLIC_URL", f"http://127.0.0.1:{ports.rasa}"),
        # The WhatsApp gateway relays what Meta delivers to this run's Rasa connector (or to WHATSAPP_RELAY_URL).
        "WHATSAPP_RELAY_URL": os.environ.get("WHATSAPP_RELAY_URL")
        or f"http://127.0.0.1:{ports.rasa}/webhooks/whatsapp/webhook",
        "RASA_TELEMETRY_ENABLED": "false",
        "PYTHONUNBUFFERED": "1",
        **run_secrets(var_dir),
        **whatsapp_env(graph_port),
        **twilio_env(twilio_port),
        **topology.service_env(),
    }
    endpoints = write_endpoints(var_dir, ports, topology)
    root = settings.PROJECT_ROOT

    def process(name: str, command: list[str], health_url: str, niceness: int = 0) -> ManagedProcess:
        return ManagedProcess(name, command, health_url, env, logs / f"{name}.log", root, niceness=niceness)

    def action_server(name: str, port: int) -> ManagedProcess:
        return process(
            name,
            [python, "-m", "credia.action_server", "--port", str(port)],
            f"http://127.0.0.1:{port}/health",
        )

    def rasa_server(name: str, port: int) -> ManagedProcess:
        # NLU and the policies keep a core busy under load; the processes that must answer at once (the WhatsApp
        # gateway's acknowledgement to Meta, the desk, the services the actions call) go first.
        return process(
            name,
            [
                python, "-m", "rasa", "run",
                "--model", str(model),
                "--endpoints", str(endpoints),
                "--credentials", str(root / "credentials.yml"),
                "--interface", settings.env("RASA_INTERFACE", "127.0.0.1"),
                "--port", str(port),
                "--enable-api", f"--auth-token={env['RASA_AUTH_TOKEN']}",
            ],
            f"http://127.0.0.1:{port}/",
            niceness=RASA_NICENESS,
        )

    action_ports = _replicas("actions", topology.action_instances, ports.actions)
    rasa_ports = _replicas("rasa", topology.rasa_instances, ports.rasa)
    action_servers = {name: action_server(name, port) for name, port in action_ports.items()}
    rasa_servers = {name: rasa_server(name, port) for name, port in rasa_ports.items()}
    scaled_out: dict[str, ManagedProcess] = {}
    if topology.scaled:
        topology.create_databases()
        balancer_port, consumer_port = free_port(), free_port()
        listen = [
            f"{public}={','.join(f'127.0.0.1:{port}' for port in instances.values())}"
            for public, instances in ((ports.rasa, rasa_ports), (ports.actions, action_ports))
            if len(instances) > 1
        ]
        if listen:
            scaled_out["balancer"] = process(
                "balancer",
                [python, "-m", "credia.balancer", *(f"--listen={item}" for item in listen),
                 "--health-port", str(balancer_port)],
                f"http://127.0.0.1:{balancer_port}/health",
            )
        scaled_out["metrics-consumer"] = process(
            "metrics-consumer",
            [python, "-m", "credia.analytics.consumer", "--port", str(consumer_port)],
            f"http://127.0.0.1:{consumer_port}/health",
        )

    return {
        "core-banking": process(
            "core-banking", [python, "-m", "credia.core_banking"], f"http://127.0.0.1:{ports.core_banking}/health"
        ),
        "payments": process(
            "payments", [python, "-m", "credia.payments"], f"http://127.0.0.1:{ports.payments}/health"
        ),
        **({"whatsapp-graph": process(
            "whatsapp-graph",
            [python, "-m", "credia.channels.fake_graph", "--port", str(graph_port)],
            f"http://127.0.0.1:{graph_port}/health",
        )} if graph_port else {}),
        **({"fake-twilio": process(
            "fake-twilio",
            [python, "-m", "credia.channels.fake_twilio", "--port", str(twilio_port)],
            f"http://127.0.0.1:{twilio_port}/health",
        )} if twilio_port else {}),
        **action_servers,
        **rasa_servers,
        **scaled_out,
        "reminders": process(
            "reminders", [python, "-m", "credia.reminders"], f"http://127.0.0.1:{reminders_port}/health"
        ),
        "whatsapp-gateway": process(
            "whatsapp-gateway",
            [python, "-m", "credia.channels.whatsapp_gateway", "--port", str(gateway_port)],
            f"http://127.0.0.1:{gateway_port}/health",
        ),
        # Its own environment: the demo passwords reach no other process.
        "desk": ManagedProcess(
            "desk", [python, "-m", "credia.desk"], f"http://127.0.0.1:{desk_port}/health", {**env, **desk},
            logs / "desk.log", root,
        ),
    }


def _replicas(kind: str, count: int, public_port: int) -> dict[str, int]:
    """Name and port of each server of a kind: one on the public port, or ``count`` instances (``rasa-1``...) on
    free ports, the balancer taking the public one."""
    if count == 1:
        return {kind: public_port}
    return {f"{kind}-{number}": free_port() for number in range(1, count + 1)}


def start_all(processes: dict[str, ManagedProcess]) -> None:
    """Start every process at once (Rasa is the slow one), then wait for each to be healthy.

    Further instances of a kind (``rasa-2``...) start once the first is healthy, so that only one of them creates
    the shared tables of an empty database."""
    first = {name: proc for name, proc in processes.items() if not _later_instance(name)}
    later = {name: proc for name, proc in processes.items() if _later_instance(name)}
    for group in (first, later):
        for proc in group.values():
            proc.start()
        for name, proc in group.items():
            proc.wait_healthy(startup_timeout(name))


def _kind_and_instance(name: str) -> tuple[str, int]:
    """``rasa-2`` → (``rasa``, 2); a process of a single instance (``core-banking``) is its kind's first."""
    kind, _, suffix = name.rpartition("-")
    return (kind, int(suffix)) if suffix.isdigit() else (name, 1)


def _later_instance(name: str) -> bool:
    """``rasa-2``, ``actions-3``...: the instances after the first of their kind."""
    return _kind_and_instance(name)[1] > 1


def stop_all(processes: dict[str, ManagedProcess]) -> None:
    for proc in reversed(list(processes.values())):
        proc.stop()


def _busy_ports(ports: Ports) -> list[str]:
    names = {"core_banking": "CORE_BANKING_PORT", "payments": "PAYMENTS_PORT", "actions": "ACTIONS_PORT",
             "whatsapp_graph": "WHATSAPP_GRAPH_PORT",
             "twilio": "TWILIO_FAKE_PORT",
             "reminders": "REMINDERS_PORT",
             "desk": "DESK_PORT",
             "whatsapp_gateway": "WHATSAPP_GATEWAY_PORT",
             "rasa": "RASA_PORT"}
    return [f"{port} ({names[field]})" for field, port in vars(ports).items() if port_is_open(port)]


def _whatsapp_banner(ports: Ports, rasa: str) -> str:
    """Where WhatsApp goes this run: the fake Graph API (what the bot sent) or the configured one."""
    fake = f"http://127.0.0.1:{ports.whatsapp_graph}   (what the bot sent: /_test/messages)"
    return (
        f"  WhatsApp webhook   http://127.0.0.1:{ports.whatsapp_gateway}/webhooks/whatsapp/webhook   "
        f"(the gateway: point Meta here; it relays to {rasa}/webhooks/whatsapp/webhook)\n"
        f"  WhatsApp Graph API {os.environ.get('WHATSAPP_GRAPH_URL') or 'fake at ' + fake}"
    )


def _twilio_banner(ports: Ports, rasa: str) -> str:
    """Where SMS, WhatsApp-over-Twilio and IVR go this run: the fake Twilio API or the configured one."""
    fake = f"http://127.0.0.1:{ports.twilio}   (what the bot sent: /_test/messages)"
    return (
        f"  Twilio webhooks    {rasa}/webhooks/twilio_messaging/webhook (SMS, WhatsApp), "
        f"{rasa}/webhooks/twilio_voice/webhook (IVR)\n"
        f"  Twilio API         {os.environ.get('TWILIO_API_URL') or 'fake at ' + fake}"
    )


def _print_banner(ports: Ports, var_dir: Path) -> None:
    rasa = f"http://127.0.0.1:{ports.rasa}"
    print(
        f"""
Credia is running.
  core-banking mock  http://127.0.0.1:{ports.core_banking}   (API description: /openapi.json)
  payments mock      http://127.0.0.1:{ports.payments}   (API description: /openapi.json)
  action server      http://127.0.0.1:{ports.actions}
  Rasa server        {rasa}   (channels: rest, socketio; HTTP API token in {var_dir / 'run' / 'rasa_token'})
{_whatsapp_banner(ports, rasa)}
{_twilio_banner(ports, rasa)}
{_desk_banner(ports, var_dir)}
  reminders          http://127.0.0.1:{ports.reminders}   (/audit token in {var_dir / 'run' / 'reminders_token'})
  logs               {var_dir / 'log'}

Talk to the bot:
  in a terminal:  .venv/bin/python -m credia.chat --url {rasa}
  over HTTP:      curl -s {rasa}/webhooks/rest/webhook -H 'Content-Type: application/json' \\
                    -d '{{"sender": "cliente-1", "message": "hola"}}'
  in a browser:   {rasa}/webhooks/webchat/   (embed on a site: {rasa}/webhooks/webchat/static/embed.js)
  web chat:       socket.io on {rasa}/socket.io

Press Ctrl-C to stop everything.
""",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="Start every process of the assistant.")
    parser.add_argument("--model", type=Path, help="model file (default: train if needed, then use it)")
    args = parser.parse_args()

    ports = Ports.from_env()
    busy = _busy_ports(ports)
    if busy:
        sys.exit(f"These ports are already in use: {', '.join(busy)}. Stop what uses them or set the variable.")
    if args.model is None:
        from credia.devtools.model import ensure_model

        args.model = ensure_model()

    var_dir = settings.VAR_DIR
    processes = build_processes(args.model, var_dir, ports)
    # Installed explicitly: a shell that starts us in the background may have set SIGINT to "ignore".
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    print("Starting core-banking, payments, action server and Rasa (Rasa takes up to a minute)...", flush=True)
    exit_code = 0
    try:
        start_all(processes)
        _print_banner(ports, var_dir)
        exit_code = _supervise(processes)
    except KeyboardInterrupt:
        pass
    except RuntimeError as exc:
        print(exc, flush=True)
        exit_code = 1
    finally:
        # A second Ctrl-C must not cut the clean stop short and leave orphans.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("Stopping all processes...", flush=True)
        stop_all(processes)
        print("Stopped.", flush=True)
    sys.exit(exit_code)


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _supervise(processes: dict[str, ManagedProcess]) -> int:
    """Wait until interrupted, restarting a process that dies (customers' messages wait in their channel's
    retries meanwhile); one that keeps dying (``MAX_RESTARTS`` within ``RESTART_WINDOW`` seconds) stops the run."""
    restarts: dict[str, list[float]] = {name: [] for name in processes}
    while True:
        for name, proc in processes.items():
            if proc.is_running():
                continue
            now = time.monotonic()
            recent = [moment for moment in restarts[name] if now - moment < RESTART_WINDOW] + [now]
            restarts[name] = recent
            if len(recent) > MAX_RESTARTS:
                print(f"{name} keeps stopping; giving up:\n{proc.log_tail()}", flush=True)
                return 1
            print(f"{name} stopped unexpectedly; restarting it:\n{proc.log_tail(10)}", flush=True)
            proc.stop()
            proc.start()
        time.sleep(0.5)



if __name__ == "__main__":
    main()
