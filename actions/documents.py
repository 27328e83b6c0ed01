"""Documents a customer sends for their application, on channels that carry attachments.

A channel that can attach files passes them in the message metadata as ``attachments``: a list of
``{"filename", "content_type", "media_url" or "media_id", "kind"?}``. Without a ``kind`` a file counts as the
next missing document, which is how people send them: one after another, in the order they were asked.
"""

from __future__ import annotations

from typing import Any

from rasa_sdk import Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from actions.base import BackendAction
from credia.backends import BackendRejected
from credia.backends.core_banking import CoreBankingClient

DOCUMENT_FIELDS = ("filename", "content_type", "media_url", "media_id")


class ActionReceiveDocuments(BackendAction):
    def name(self) -> str:
        return "action_receive_documents"

    async def act(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        application_id = tracker.get_slot("application_id")
        if not application_id:
            dispatcher.utter_message(
                text="Para recibir documentos primero necesito su solicitud. Escriba «quiero un préstamo» para "
                "empezarla."
            )
            return []
        attachments = (tracker.latest_message.get("metadata") or {}).get("attachments") or []
        if not attachments:
            dispatcher.utter_message(
                text="No recibí ningún archivo. Si este canal no le permite adjuntar, puede enviarlos desde "
                "WhatsApp o el chat de nuestra web."
            )
            return []
        client = CoreBankingClient()
        status = await client.application_documents(int(application_id))
        missing = [d["kind"] for d in status["missing"]]
        rejected = []
        for attachment in attachments:
            document = {k: attachment[k] for k in DOCUMENT_FIELDS if attachment.get(k)}
            document["kind"] = attachment.get("kind") or (missing.pop(0) if missing else "other")
            try:
                await client.add_document(int(application_id), document)
            except BackendRejected as error:
                rejected.append(f"{attachment.get('filename', 'un archivo')} ({error.detail})")
        status = await client.application_documents(int(application_id))
        dispatcher.utter_message(text=documents_message(status, rejected))
        return []


def documents_message(status: dict[str, Any], rejected: list[str]) -> str:
    """What was received and what is still missing, in a few lines."""
    received = {d["kind"] for d in status["received"]}
    labels = {d["kind"]: d["label"] for d in status["required"]}
    lines = []
    if received:
        lines.append("Recibí: " + ", ".join(labels.get(kind, kind) for kind in sorted(received)) + ".")
    if rejected:
        lines.append("No pude guardar: " + "; ".join(rejected) + ". Envíe un PDF o una foto (JPG o PNG).")
    if status["missing"]:
        lines.append("Aún falta: " + ", ".join(d["label"] for d in status["missing"]) + ".")
    else:
        lines.append(f"¡Listo! Tenemos todos los documentos de su solicitud {status['code']}.")
    return "\n".join(lines)
