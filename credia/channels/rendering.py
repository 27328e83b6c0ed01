"""One place that decides how a bot response looks on each channel.

Conversation designers write a response once (text and buttons) in the domain, and add a channel variant only
where it must differ (Rasa's ``channel:`` key on a response variation). Every connector turns what Rasa hands
it into its channel's shape through these functions:

- rich chat (WhatsApp Cloud API): up to 3 choices as reply buttons, more as a list, text split under the limit;
- plain text (SMS, Twilio WhatsApp): choices as numbered options, a numeric reply mapped back to the payload;
- voice (IVR): no links or symbols read aloud, choices spoken as "para ..., diga uno o marque 1".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, List, Optional, Sequence

from credia.values import plain

NUMBER_WORDS = ("uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho", "nueve", "diez")
URL = re.compile(r"https?://\S+")
EMOJI = re.compile("[\U0001F300-\U0001FAFF\u2600-\u27BF\uFE0F]")


@dataclass(frozen=True)
class Choice:
    """A button: what the customer sees (``title``) and what the bot receives (``payload``)."""

    title: str
    payload: str


def choices_of(buttons: Optional[Iterable[dict[str, Any]]]) -> List[Choice]:
    """Rasa buttons (``{"title", "payload"}``) as choices; a button without a payload sends its title."""
    return [
        Choice(str(button.get("title", "")), str(button.get("payload") or button.get("title", "")))
        for button in buttons or []
        if button.get("title")
    ]


def shorten(text: str, limit: int) -> str:
    """Fit a title into ``limit`` characters, cutting at a word with an ellipsis when it must."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,.;:") + "…"


def split_text(text: str, limit: int) -> List[str]:
    """Split ``text`` into parts of at most ``limit`` characters, at paragraphs, then lines, then words."""
    text = text.strip()
    if len(text) <= limit:
        return [text] if text else []
    parts: List[str] = []
    current = ""
    for piece in re.split(r"(\n\n|\n|(?<=[.!?]) )", text):
        if len(current) + len(piece) <= limit:
            current += piece
            continue
        if current.strip():
            parts.append(current.strip())
        current = piece.lstrip() if piece.strip() else ""
        while len(current) > limit:
            head = current[:limit].rsplit(" ", 1)[0] or current[:limit]
            parts.append(head.strip())
            current = current[len(head):].lstrip()
    if current.strip():
        parts.append(current.strip())
    return parts


def numbered_options(text: str, choices: Sequence[Choice]) -> str:
    """Choices for plain-text channels: the text, then "1. Pagar ahora" lines and how to answer."""
    if not choices:
        return text
    lines = [f"{number}. {choice.title}" for number, choice in enumerate(choices, 1)]
    return f"{text}\n\n" + "\n".join(lines) + "\n\nResponda con el número de su opción."


def _plain(text: str) -> str:
    return plain(text).strip(" .!¡?¿")


def choice_for_reply(reply: str, choices: Sequence[Choice]) -> Optional[str]:
    """The payload a plain-text or spoken answer picks: "2", "dos", "opción 2", a DTMF digit or the title."""
    if not choices:
        return None
    plain = _plain(reply)
    match = re.fullmatch(r"(?:la\s+)?(?:opcion\s+)?(?:numero\s+)?(\d{1,2}|" + "|".join(NUMBER_WORDS) + ")", plain)
    if match:
        token = match.group(1)
        number = int(token) if token.isdigit() else NUMBER_WORDS.index(token) + 1
        return choices[number - 1].payload if 1 <= number <= len(choices) else None
    for choice in choices:
        if plain == _plain(choice.title):
            return choice.payload
    return None


def speech(text: str, choices: Sequence[Choice] = ()) -> str:
    """What the IVR says: no links, emoji or bullets, and each choice as a spoken and keyed option."""
    spoken = URL.sub("el enlace que le enviaremos por mensaje de texto", text)
    spoken = EMOJI.sub("", spoken).replace("•", "").replace("—", ",")
    spoken = re.sub(r"S/\s?([\d,]+(?:\.\d+)?)", r"\1 soles", spoken.replace("\u00a0", " "))
    spoken = " ".join(spoken.split())
    options = [
        f"Para {choice.title.lower()}, diga {NUMBER_WORDS[number - 1] if number <= len(NUMBER_WORDS) else number} "
        f"o marque {number}."
        for number, choice in enumerate(choices, 1)
    ]
    return " ".join([spoken, *options]).strip()
