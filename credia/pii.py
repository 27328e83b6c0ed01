"""Customer personal data found in free text, and its masked form: one set of rules for logs and metrics.

Masked: e-mail addresses, dates (``14/03/1985``, ``1985-03-14``: dates of birth are the sensitive ones), and
runs of six digits or more with spaces, dots or dashes between them (DNIs, RUTs, phones, SMS codes, card and
account numbers). IPv4 addresses are left as they are: operators need them, and they are not a customer's data
the assistant asks for. Names are not detected.
"""

from __future__ import annotations

import re

EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
DATE = re.compile(
    r"(?<!\d)(?:\d{1,2}\s*[/.-]\s*\d{1,2}\s*[/.-]\s*\d{2,4}|(?:19|20)\d{2}-\d{1,2}-\d{1,2})(?!\d)"
)
LONG_NUMBER = re.compile(r"\+?(?<!\d)\d(?:[\s.-]?\d){5,}(?!\d)")
IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?![\d.])")

EMAIL_MASK, DATE_MASK, NUMBER_MASK = "<correo>", "<fecha>", "<número>"


def _numbers_outside_addresses(text: str) -> str:
    pieces, last = [], 0
    for address in IPV4.finditer(text):
        pieces.append(LONG_NUMBER.sub(NUMBER_MASK, text[last:address.start()]))
        pieces.append(address.group())
        last = address.end()
    pieces.append(LONG_NUMBER.sub(NUMBER_MASK, text[last:]))
    return "".join(pieces)


def mask_pii(text: str) -> str:
    """``mi dni es 45879632`` → ``mi dni es <número>``; e-mails and dates likewise; spacing kept as it was."""
    text = EMAIL.sub(EMAIL_MASK, text)
    text = DATE.sub(DATE_MASK, text)
    return _numbers_outside_addresses(text)
