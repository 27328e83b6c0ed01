"""Customer messages as the metrics show them: personal data masked, variants of one message counted once.

Reports and NLU exports are read by people who must not see a customer's DNI, phone, date of birth or e-mail,
and their examples may end up in training data; so those are replaced by placeholders before anything is
counted or shown. Names are not detected and stay as written.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

from credia.pii import mask_pii
from credia.values import plain

SPACES = re.compile(r"\s+")


def mask_personal_data(text: str) -> str:
    """``mi dni es 45879632`` → ``mi dni es <número>``; e-mails and dates likewise (``credia.pii``), spaces
    collapsed."""
    return SPACES.sub(" ", mask_pii(text)).strip()


def fold(text: str) -> str:
    """The form two messages share when they differ only in case, accents or spaces."""
    return SPACES.sub(" ", plain(text)).strip()


def tally(texts: Iterable[str]) -> list[tuple[str, int]]:
    """Masked messages counted by folded form, most frequent first; each shown as its most frequent spelling."""
    counts: Counter[str] = Counter()
    spellings: dict[str, Counter[str]] = {}
    for text in texts:
        masked = mask_personal_data(text)
        if not masked:
            continue
        key = fold(masked)
        counts[key] += 1
        spellings.setdefault(key, Counter())[masked] += 1
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [(spellings[key].most_common(1)[0][0], count) for key, count in ranked]
