"""End to end: the launcher starts every real process, a customer chats over HTTP, Ctrl-C stops it all."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from credia.processes import http_ok, port_is_open
from credia.settings import PROJECT_ROOT
from tests.e2e.conftest import Chat, free_ports

pytestmark = pytest.mark.e2e


def processes_using(marker: str) -> list[int]:
    """PIDs of live processes whose environment mentions ``marker`` (our per-test var dir)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if marker.encode() in (proc / "environ").read_bytes():
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def test_launcher_runs_a_conversation_and_stops_cleanly(model: Path, tmp_path: Path) -> None:
    ports = free_ports()
    var_dir = tmp_path / "var"
    env = {
        **os.environ,
        "CREDIA_VAR_DIR": str(var_dir),
        "CORE_BANKING_PORT": str(ports.core_banking),
        "PAYMENTS_PORT": str(ports.payments),
        "ACTIONS_PORT": str(ports.actions),
        "RASA_PORT": str(ports.rasa),
    }
    env.pop("PAYMENTS_WEBHOOK_SECRET", None)
    env.pop("RASA_AUTH_TOKEN", None)
    launcher = subprocess.Popen(
        [sys.executable, "-m", "credia.launcher", "--model", str(model)],
        cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    rasa_url = f"http://127.0.0.1:{ports.rasa}"
    try:
        banner = []
        for line in launcher.stdout:  # type: ignore[union-attr]
            banner.append(line)
            if "Press Ctrl-C" in line:
                break
        output = "".join(banner)
        assert "Credia is running" in output, output
        assert "/webhooks/rest/webhook" in output and "credia.chat" in output
        for port in (ports.core_banking, ports.payments, ports.actions):
            assert http_ok(f"http://127.0.0.1:{port}/health")

        chat = Chat(rasa_url, "e2e-cliente-1")
        assert "Credia" in chat.say("hola, buenas tardes")
        products = chat.say("me podria decir que tipos de credito ofrecen?")
        assert "créditos que ofrecemos" in products and "S/" in products and "TEA" in products
        assert "algo más" in products
        farewell = chat.say("no, eso es todo")
        assert "Gracias por escribirnos" in farewell or "Hasta pronto" in farewell

        token = (var_dir / "run" / "rasa_token").read_text()
        assert requests.get(f"{rasa_url}/conversations/e2e-cliente-1/tracker", timeout=10).status_code == 401
        tracker = requests.get(
            f"{rasa_url}/conversations/e2e-cliente-1/tracker", params={"token": token}, timeout=10
        ).json()
        user_texts = [e["text"] for e in tracker["events"] if e["event"] == "user"]
        assert user_texts == ["hola, buenas tardes", "me podria decir que tipos de credito ofrecen?", "no, eso es todo"]
        assert (var_dir / "rasa_tracker.db").stat().st_size > 0
    finally:
        launcher.send_signal(signal.SIGINT)
        remaining = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 0, remaining
    assert "Stopped." in remaining
    time.sleep(0.5)
    assert not any(port_is_open(p) for p in vars(ports).values()), "a port is still bound after Ctrl-C"
    assert processes_using(str(var_dir)) == [], "orphan processes left after Ctrl-C"
