"""Moving a conversation from one channel to another without losing anything."""

from __future__ import annotations

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType
from rasa_sdk.executor import CollectingDispatcher
from rasa_sdk.types import DomainDict

from credia.channels.links import webchat_url

LINK_MINUTES = 30


class ActionSendWebLink(Action):
    """A signed link, valid for a while, that opens the web chat in this very conversation (same slots, same
    verification), so the customer goes on where they were instead of starting again."""

    def name(self) -> str:
        return "action_send_web_link"

    async def run(self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: DomainDict) -> list[EventType]:
        url = webchat_url(tracker.sender_id, ttl_seconds=LINK_MINUTES * 60)
        dispatcher.utter_message(
            text=f"Claro. Abra este enlace para seguir en nuestra web, en esta misma conversación:\n{url}\n"
            f"Es personal y vence en {LINK_MINUTES} minutos; no lo comparta."
        )
        return []
