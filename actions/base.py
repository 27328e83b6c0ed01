"""Shared behaviour of actions that call the lender's systems."""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Any

from rasa_sdk import Action, Tracker
from rasa_sdk.events import EventType, SlotSet
from rasa_sdk.executor import CollectingDispatcher

from credia.backends import BackendError

logger = logging.getLogger(__name__)


class BackendAction(Action, ABC):
    """An action whose backend failures become a polite answer instead of an error.

    Subclasses implement ``act``. When a backend is down, slow or answers 5xx, the customer is told to try
    again in a few minutes and the conversation goes on; nothing is raised into the action server.
    """

    @abstractmethod
    def name(self) -> str:
        """The action's name in the domain."""

    @abstractmethod
    async def act(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        """Do the action's work; may raise ``BackendError``."""

    async def run(
        self, dispatcher: CollectingDispatcher, tracker: Tracker, domain: dict[str, Any]
    ) -> list[dict[str, Any]]:
        try:
            return await self.act(dispatcher, tracker, domain)
        except BackendError as exc:
            logger.warning("%s could not complete: %s", self.name(), exc)
            dispatcher.utter_message(response="utter_backend_unavailable")
            return []


def goal_reached(goal: str) -> EventType:
    """Mark in the tracker that a journey reached its goal; the metrics count these, not a hand-kept counter.

    Goals: application_submitted, status_answered, debt_shown, payment_link, plan_created, promise_created.
    """
    return SlotSet("goal_reached", goal)


def handed_off(reason: str) -> EventType:
    """Mark in the tracker that the conversation went to a person, and why (for the handoff metrics)."""
    return SlotSet("handoff_reason", reason)
