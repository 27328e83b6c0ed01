"""Talk to the running assistant from a terminal, like `rasa shell`, through its REST channel.

Buttons are shown numbered; typing the number sends the button's payload. Usage:
``python -m credia.chat [--url http://127.0.0.1:5005] [--sender cliente-1]``.
"""

from __future__ import annotations

import argparse
import uuid

import requests


def send(url: str, sender: str, message: str) -> list[dict]:
    response = requests.post(
        f"{url}/webhooks/rest/webhook", json={"sender": sender, "message": message}, timeout=30
    )
    response.raise_for_status()
    return response.json()


def render(replies: list[dict]) -> list[dict]:
    """Print the bot's replies and return the buttons offered, in the order shown."""
    buttons: list[dict] = []
    for reply in replies:
        if reply.get("text"):
            print(f"Bot: {reply['text']}")
        if reply.get("image"):
            print(f"Bot: [imagen] {reply['image']}")
        for button in reply.get("buttons", []):
            buttons.append(button)
            print(f"  {len(buttons)}. {button['title']}")
    return buttons


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", default="http://127.0.0.1:5005")
    parser.add_argument("--sender", default=f"terminal-{uuid.uuid4().hex[:8]}")
    args = parser.parse_args()
    print("Escriba su mensaje (Ctrl-D o /salir para terminar).")
    buttons: list[dict] = []
    while True:
        try:
            text = input("Usted: ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if text == "/salir":
            return
        if not text:
            continue
        if text.isdigit() and 1 <= int(text) <= len(buttons):
            text = buttons[int(text) - 1]["payload"]
        try:
            buttons = render(send(args.url, args.sender, text))
        except requests.RequestException as exc:
            print(f"(No se pudo contactar al asistente en {args.url}: {exc})")


if __name__ == "__main__":
    main()
