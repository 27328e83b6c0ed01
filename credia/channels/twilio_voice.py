"""Phone IVR through Twilio Voice, in Spanish (``POST /webhooks/twilio_voice/webhook``).

Each webhook of a call is one turn: the caller's speech (``SpeechResult``) or keypad digits (``Digits``) go to
the bot, and its answers come back at once as TwiML: ``<Say>`` inside a ``<Gather input="speech dtmf">`` that
listens for the next turn. Answers are adapted for the ear (``rendering.speech``: no links or symbols, options
spoken as "diga uno o marque 1"), and "dos" or the key 2 picks the second option. Links the bot would have
shown are sent to the caller by SMS, as the spoken answer promises.

The conversation id is the call's ``CallSid``: a caller id can be spoofed, so nothing proven in one call (such
as identity) carries over to another call from the same number.

Twilio waits about 15 seconds for a webhook: a turn gets ``TWILIO_VOICE_TURN_SECONDS``; a slower one says "un
momento" and Twilio comes back for the answer (``<Redirect>``). Silence gets one re-prompt, then a polite
goodbye. A response with the custom payload ``{"transfer": true}`` (optionally ``"number"``) puts the call
through to a person with ``<Dial>``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Dict, List, Optional, Sequence, Set, Text
from urllib.parse import urlencode

from rasa.core.channels.channel import CollectingOutputChannel, InputChannel, UserMessage
from rasa.shared.core.events import BotUttered
from sanic import Blueprint, response
from sanic.request import Request
from sanic.response import HTTPResponse

from credia import settings
from credia.channels.guard import guard
from credia.channels.rendering import NUMBER_WORDS, URL, Choice, choices_of, speech, split_text
from credia.channels.twilio import (
    BODY_LIMIT,
    RequestRejected,
    TwilioAccount,
    TwilioApiError,
    TwilioRestClient,
    as_reply_to_buttons,
    called_url,
    last_choices,
    latest_bot_turn,
    masked,
    rejected,
    signed_form,
    twilio_blueprint,
)

logger = logging.getLogger(__name__)

# Default voice per supported language (Amazon Polly neural voices that Twilio offers for <Say>).
VOICES = {"es-MX": "Polly.Mia-Neural", "es-US": "Polly.Lupe-Neural"}
CALL_START_TEXT = "/greet"
ENDED_CALL_STATUSES = {"completed", "busy", "failed", "no-answer", "canceled"}
# How many times a slow turn is waited for (each up to the turn budget) before apologising.
MAX_WAITS = 3
# Twilio's <Say> reads at most 4,096 characters.
SAY_LIMIT = 4000
DIAL_TIMEOUT_SECONDS = 30

NOT_HEARD = "Disculpe, no le escuché."
GOODBYE = "Como no le escucho, terminaré la llamada. Gracias por comunicarse con nosotros. Hasta luego."
ANYTHING_ELSE = "¿Le puedo ayudar en algo más?"
ONE_MOMENT = "Un momento, por favor."
TOO_SLOW = "Lo siento, no puedo responderle en este momento. Por favor, llámenos más tarde. Hasta luego."
TRANSFERRING = "Le comunico con una persona de nuestro equipo. Un momento, por favor."
NOBODY_AVAILABLE = "En este momento no hay asesores disponibles."
# Characters XML 1.0 cannot carry at all, even escaped.
NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class TwilioVoiceOutput(CollectingOutputChannel):
    """Collects a turn's answers for the TwiML reply; named for voice variants of responses (``channel:``)."""

    @classmethod
    def name(cls) -> Text:
        return "twilio_voice"


@dataclass
class VoiceSettings:
    """How the IVR speaks and listens."""

    language: str = "es-MX"
    voice: str = ""
    gather_timeout: int = 5
    turn_seconds: float = 10.0
    transfer_number: str = ""
    sms_number: str = ""

    def __post_init__(self) -> None:
        if self.language not in VOICES:
            raise ValueError(f"TWILIO_VOICE_LANGUAGE must be one of {', '.join(VOICES)}, not {self.language!r}")
        self.voice = self.voice or VOICES[self.language]


@dataclass
class PendingTurn:
    """A turn still running when its webhook had to be answered; Twilio comes back for it."""

    task: "asyncio.Task[Any]"
    output: TwilioVoiceOutput
    caller: str
    started: float = field(default_factory=time.monotonic)


class Answer:
    """A TwiML ``<Response>`` built with ElementTree, so every text is escaped and the XML is always valid."""

    def __init__(self, voice: VoiceSettings) -> None:
        self.voice = voice
        self.root = ET.Element("Response")

    def say(self, text: str, parent: Optional[ET.Element] = None) -> None:
        for part in split_text(NOT_XML.sub("", text), SAY_LIMIT):
            element = ET.SubElement(
                self.root if parent is None else parent, "Say", language=self.voice.language, voice=self.voice.voice
            )
            element.text = part

    def gather(self, action: str, texts: Sequence[str], choices: Sequence[Choice]) -> None:
        """Say ``texts`` while listening for speech or keys; a single key suffices when there are up to 9 options."""
        attributes = {
            "input": "speech dtmf",
            "language": self.voice.language,
            "action": action,
            "method": "POST",
            "timeout": str(self.voice.gather_timeout),
            "speechTimeout": "auto",
            "actionOnEmptyResult": "true",
        }
        if 0 < len(choices) <= 9:
            attributes["numDigits"] = "1"
            words = [NUMBER_WORDS[number] for number in range(len(choices))]
            attributes["hints"] = ", ".join(words + [choice.title.lower() for choice in choices])
        gather = ET.SubElement(self.root, "Gather", attributes)
        for text in texts:
            self.say(text, gather)

    def dial(self, number: str, action: str) -> None:
        ET.SubElement(self.root, "Dial", action=action, method="POST", timeout=str(DIAL_TIMEOUT_SECONDS)).text = number

    def redirect(self, url: str) -> None:
        ET.SubElement(self.root, "Redirect", method="POST").text = url

    def hangup(self) -> None:
        ET.SubElement(self.root, "Hangup")

    def http(self) -> HTTPResponse:
        xml = '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(self.root, encoding="unicode")
        return response.text(xml, content_type="text/xml; charset=utf-8")


def spoken(messages: Sequence[Dict[str, Any]]) -> List[str]:
    """What to say for a turn's messages: texts for the ear, options as spoken and keyed choices."""
    texts = []
    for message in messages:
        text = speech(message.get("text") or "", choices_of(message.get("buttons")))
        if text:
            texts.append(text)
    return texts


def transfer_of(messages: Sequence[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
    """The ``{"transfer": true, "number"?}`` custom payload of a turn, when a response asks for a person."""
    for message in messages:
        custom = message.get("custom")
        if isinstance(custom, dict) and custom.get("transfer") is True:
            return custom
    return None


def message_of(event: BotUttered) -> Dict[str, Any]:
    return {"text": event.text, "buttons": event.data.get("buttons")}


class TwilioVoiceInput(InputChannel):
    """Twilio Voice webhook: every request signed, answered with TwiML within Twilio's time limit."""

    def __init__(
        self, account: TwilioAccount, voice: VoiceSettings, send_attempts: int = 4, retry_base_seconds: float = 0.5
    ) -> None:
        self.account = account
        self.voice = voice
        self.client = TwilioRestClient(account, send_attempts, retry_base_seconds)
        self._pending: Dict[str, PendingTurn] = {}
        self._tasks: Set["asyncio.Task[Any]"] = set()

    @classmethod
    def name(cls) -> Text:
        return "twilio_voice"

    @classmethod
    def from_credentials(cls, credentials: Optional[Dict[Text, Any]]) -> InputChannel:
        given = credentials or {}
        return cls(
            TwilioAccount.from_credentials(given),
            VoiceSettings(
                language=given.get("language") or settings.env("TWILIO_VOICE_LANGUAGE", "es-MX"),
                voice=given.get("voice") or settings.env("TWILIO_VOICE_NAME", ""),
                gather_timeout=settings.env_int("TWILIO_VOICE_GATHER_TIMEOUT", 5),
                turn_seconds=settings.env_float("TWILIO_VOICE_TURN_SECONDS", 10.0),
                transfer_number=given.get("transfer_number") or settings.env("TWILIO_VOICE_TRANSFER_NUMBER", ""),
                sms_number=given.get("sms_number") or settings.twilio_sms_number(),
            ),
            send_attempts=settings.twilio_send_attempts(),
            retry_base_seconds=settings.twilio_retry_base_seconds(),
        )

    def blueprint(self, on_new_message: Callable[[UserMessage], Awaitable[Any]]) -> Blueprint:
        webhook = twilio_blueprint("credia_twilio_voice", self.client)

        @webhook.route("/webhook", methods=["POST"], stream=True)
        async def receive(request: Request) -> HTTPResponse:
            try:
                form = await signed_form(request, self.account.auth_token, self.account.public_url)
                if not form.get("CallSid"):
                    raise RequestRejected(400, "CallSid is required")
                return await self._answer(request, form, on_new_message)
            except RequestRejected as error:
                return rejected(error)

        return webhook

    def _action(self, request: Request, **query: Any) -> str:
        """The absolute URL of this webhook with ``query``: where Twilio posts the next step of the call."""
        base = called_url(request, self.account.public_url).split("?", 1)[0]
        return f"{base}?{urlencode(query)}" if query else base

    async def _answer(
        self, request: Request, form: Dict[str, str], on_new_message: Callable[[UserMessage], Awaitable[Any]]
    ) -> HTTPResponse:
        call_sid = form["CallSid"]
        if form.get("CallStatus") in ENDED_CALL_STATUSES:
            return Answer(self.voice).http()
        if "pending" in request.args:
            return await self._resume(request, call_sid, _int(request.args.get("pending")))
        if "dial" in request.args:
            return self._after_dial(request, call_sid, form.get("DialCallStatus", ""))
        metadata: Dict[str, Any] = {"call_sid": call_sid, "caller": form.get("From", "")}
        digits, said = form.get("Digits", "").strip(), form.get("SpeechResult", "").strip()
        if digits or said:
            text = await as_reply_to_buttons(request.app, call_sid, digits or said)
            metadata["input"] = "dtmf" if digits else "speech"
            if said and form.get("Confidence"):
                metadata["speech_confidence"] = _float(form["Confidence"])
        elif "silences" in request.args:
            return await self._silence(request, call_sid, _int(request.args.get("silences")))
        else:
            text = CALL_START_TEXT
        verdict = await guard().check(call_sid, text)
        if not verdict.allowed:
            answer = Answer(self.voice)
            reply = guard().reply_for(verdict)
            answer.gather(self._action(request, silences=0), [reply] if reply else [], [])
            return answer.http()
        output = TwilioVoiceOutput()
        message = UserMessage(text, output, call_sid, input_channel=self.name(), metadata=metadata)
        task = asyncio.ensure_future(on_new_message(message))
        return await self._wait(request, call_sid, PendingTurn(task, output, form.get("From", "")), waits=0)

    async def _wait(self, request: Request, call_sid: str, pending: PendingTurn, waits: int) -> HTTPResponse:
        """Answer with the turn's result if it comes within the budget, else ask Twilio to come back for it."""
        done, _ = await asyncio.wait({pending.task}, timeout=self.voice.turn_seconds)
        answer = Answer(self.voice)
        if not done:
            if waits + 1 >= MAX_WAITS:
                logger.error("call %s: the bot did not answer in %.0fs", call_sid, time.monotonic() - pending.started)
                answer.say(TOO_SLOW)
                answer.hangup()
                return answer.http()
            self._pending[call_sid] = pending
            # A caller who hangs up never comes back for the answer.
            forget_after = MAX_WAITS * self.voice.turn_seconds * 2
            asyncio.get_running_loop().call_later(forget_after, self._forget, call_sid, pending)
            answer.say(ONE_MOMENT)
            answer.redirect(self._action(request, pending=waits + 1))
            return answer.http()
        if pending.task.exception() is not None:
            logger.error("call %s: the turn failed", call_sid, exc_info=pending.task.exception())
            answer.say(TOO_SLOW)
            answer.hangup()
            return answer.http()
        return self._render(request, answer, pending.output.messages, pending.caller)

    async def _resume(self, request: Request, call_sid: str, waits: int) -> HTTPResponse:
        pending = self._pending.pop(call_sid, None)
        if pending is None:  # e.g. the server restarted in between: ask again
            return await self._silence(request, call_sid, 0)
        return await self._wait(request, call_sid, pending, waits)

    def _forget(self, call_sid: str, pending: PendingTurn) -> None:
        if self._pending.get(call_sid) is pending:
            del self._pending[call_sid]

    def _render(self, request: Request, answer: Answer, messages: List[Dict[str, Any]], caller: str) -> HTTPResponse:
        texts = spoken(messages) or [ANYTHING_ELSE]
        self._send_links(caller, messages)
        transfer = transfer_of(messages)
        number = (transfer or {}).get("number") or self.voice.transfer_number
        if transfer and number:
            for text in texts:
                answer.say(text)
            answer.say(TRANSFERRING)
            answer.dial(str(number), self._action(request, dial=1))
            return answer.http()
        if transfer:
            logger.warning("a response asked for a transfer but TWILIO_VOICE_TRANSFER_NUMBER is not set")
        choices = choices_of(messages[-1].get("buttons")) if messages else []
        answer.gather(self._action(request, silences=0), texts, choices)
        return answer.http()

    async def _silence(self, request: Request, call_sid: str, silences: int) -> HTTPResponse:
        """Nothing heard: repeat the last answer once, then say goodbye and hang up."""
        answer = Answer(self.voice)
        if silences >= 1:
            answer.say(GOODBYE)
            answer.hangup()
            return answer.http()
        turn = await latest_bot_turn(request.app, call_sid)
        texts = spoken([message_of(event) for event in turn]) or [ANYTHING_ELSE]
        answer.gather(self._action(request, silences=silences + 1), [NOT_HEARD, *texts], last_choices(turn))
        return answer.http()

    def _after_dial(self, request: Request, call_sid: str, status: str) -> HTTPResponse:
        """After a transfer: hang up when the person talked with the caller, else back to the bot."""
        answer = Answer(self.voice)
        if status in ("completed", "answered"):
            answer.hangup()
            return answer.http()
        logger.warning("call %s: transfer ended with %s", call_sid, status or "no status")
        answer.gather(self._action(request, silences=0), [NOBODY_AVAILABLE, ANYTHING_ELSE], [])
        return answer.http()

    def _send_links(self, caller: str, messages: Sequence[Dict[str, Any]]) -> None:
        """Texts with links go to the caller by SMS (the spoken answer says so), without delaying the call."""
        texts = [message["text"] for message in messages if message.get("text") and URL.search(message["text"])]
        if not texts or not caller.startswith("+") or not self.voice.sms_number:
            return
        body = "\n\n".join(texts)[:BODY_LIMIT]
        task = asyncio.ensure_future(self._send_sms(caller, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_sms(self, caller: str, body: str) -> None:
        try:
            await self.client.create_message([("To", caller), ("From", self.voice.sms_number), ("Body", body)])
        except TwilioApiError as error:
            logger.error("SMS with links to caller %s failed: %s", masked(caller), error)


def _int(value: Optional[str]) -> int:
    return int(value) if value and value.isdigit() else 0


def _float(value: str) -> Optional[float]:
    try:
        return float(value)
    except ValueError:
        return None
