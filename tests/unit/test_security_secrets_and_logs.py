"""No secret in the repository, no process without its secrets, no customer data in the logs."""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import pytest

from credia import logs
from credia.analytics.texts import mask_personal_data

PROJECT_ROOT = Path(__file__).resolve().parents[2]

# What a leaked credential looks like: provider key formats, private keys, and a secret-named variable assigned
# a long literal. Placeholders in the documentation (<...>, $VAR, ${VAR}, "...") do not match.
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |OPENSSH |DSA )?PRIVATE KEY-----"),
    "AWS key": re.compile(r"AKIA[0-9A-Z]{16}"),
    "Slack token": re.compile(r"xox[abposr]-[0-9A-Za-z-]{10,}"),
    "GitHub token": re.compile(r"gh[pousr]_[0-9A-Za-z]{30,}"),
    "Twilio key": re.compile(r"\bSK[0-9a-f]{32}\b"),
    "Meta token": re.compile(r"\bEAA[0-9A-Za-z]{40,}"),
    "assigned secret": re.compile(
        r"(?i)\b[A-Z_]*(?:SECRET|PASSWORD|TOKEN|API_KEY)[A-Z_]*\s*[=:]\s*[\"']?(?![\"'<$({])[A-Za-z0-9+/_\-]{24,}"
    ),
}
# Test fixtures use obvious fake values; they are allowed in tests only when they say so.
ALLOWED = re.compile(r"(?i)test|prueba|fake|example|ejemplo|dummy|demo")


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=PROJECT_ROOT, capture_output=True, check=True).stdout
    return [PROJECT_ROOT / name for name in listed.decode().split("\0") if name]


def secrets_in(text: str) -> list[str]:
    return [f"{kind}: {match.group()[:40]}" for kind, pattern in SECRET_PATTERNS.items()
            for match in pattern.finditer(text) if not ALLOWED.search(match.group())]


def test_the_scanner_finds_what_a_leak_looks_like() -> None:
    # Built from pieces, so that this file does not carry what it describes.
    leaks = [
        "WHATSAPP_APP_SECRET = " + '"' + "9f8e7d6c" * 4 + '"',
        "TWILIO_AUTH_TOKEN: " + "0123456789abcdef" * 2,
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "aws = '" + "AKIA" + "IOSFODNN7ABCDEFG'",
    ]
    assert all(secrets_in(leak) for leak in leaks)
    assert not secrets_in('RASA_AUTH_TOKEN = os.environ.get("RASA_AUTH_TOKEN") or secrets.token_urlsafe(24)')
    assert not secrets_in("export WHATSAPP_APP_SECRET=<the app secret>")


def test_no_tracked_file_carries_a_secret() -> None:
    found = {}
    for path in tracked_files():
        if not path.is_file() or path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        leaks = secrets_in(text)
        if leaks:
            found[str(path.relative_to(PROJECT_ROOT))] = leaks
    assert found == {}


@pytest.mark.parametrize("module, variable", [
    ("credia.core_banking", "PAYMENTS_WEBHOOK_SECRET"),
    ("credia.payments", "PAYMENTS_WEBHOOK_SECRET"),
    ("credia.desk", "DESK_SUPERVISOR_PASSWORD"),
    ("credia.reminders", "RASA_AUTH_TOKEN"),
    ("credia.action_server", "ACTION_SERVER_TOKEN"),
])
def test_a_process_without_its_secret_refuses_to_start_and_names_it(
    tmp_path: Path, module: str, variable: str
) -> None:
    env = {key: value for key, value in os.environ.items()
           if not re.search(r"SECRET|TOKEN|PASSWORD", key)}
    env["CREDIA_VAR_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", module], cwd=PROJECT_ROOT, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode != 0
    assert variable in result.stderr.strip().splitlines()[-1]


@pytest.fixture()
def log_output() -> Iterator[io.StringIO]:
    logs.install()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(name)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    previous = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


CUSTOMER_DATA = ["45879632", "+51 987 654 321", "maria.quispe@correo.pe", "4111 1111 1111 1111", "14/03/1985",
                 "1985-03-14", "12.345.678-5"]


def test_customer_data_is_masked_in_every_log_record(log_output: io.StringIO) -> None:
    logging.getLogger("rasa.core.processor").info("texto del usuario: %s", " ".join(CUSTOMER_DATA))
    logging.getLogger("credia.channels.whatsapp").warning("dni %d de %s", 45879632, "51987654321")
    logging.getLogger("sanic.access").info("GET /customers?document_number=45879632 from 127.0.0.1:5005")
    try:
        raise ValueError("documento 45879632 no válido para maria.quispe@correo.pe")
    except ValueError:
        logging.getLogger("credia.core_banking").exception("falló la verificación de %s", "10117410")
    written = log_output.getvalue()
    leaked = [datum for datum in [*CUSTOMER_DATA, "51987654321", "10117410"] if datum in written]
    assert leaked == []
    assert "<número>" in written and "<correo>" in written and "<fecha>" in written
    assert "127.0.0.1:5005" in written and "ValueError: documento <número>" in written


def test_the_access_log_of_the_services_keeps_its_fields_and_masks_the_path(log_output: io.StringIO) -> None:
    access = logging.getLogger("uvicorn.access")
    record = access.makeRecord("uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
                               ("127.0.0.1:40000", "GET", "/customers?document_number=45879632", "1.1", 200), None)
    assert record.args == ("127.0.0.1:40000", "GET", "/customers?document_number=<número>", "1.1", 200)


def test_metrics_exports_mask_the_same_data() -> None:
    masked = mask_personal_data("Mi DNI es 45879632, nací el 1985-03-14, escríbame a maria.quispe@correo.pe")
    assert masked == "Mi DNI es <número>, nací el <fecha>, escríbame a <correo>"
