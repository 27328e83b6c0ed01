"""A stand-in for a credit bureau (Equifax/Sentinel in Peru): the same document always gets the same answer.

The answer is drawn from a random generator seeded with a hash of the document, so demos and tests are
repeatable without storing anything; the SBS rating agrees with the worst days past due reported.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from decimal import Decimal

from credia.core_banking.models import DocumentType

# (rating, share of the population, days past due range, score range); SBS categories by days past due:
# Normal ≤ 8, CPP 9–30, Deficiente 31–60, Dudoso 61–120, Pérdida > 120.
_RATINGS = (
    ("Normal", 70, (0, 8), (620, 950)),
    ("CPP", 10, (9, 30), (500, 640)),
    ("Deficiente", 8, (31, 60), (400, 520)),
    ("Dudoso", 6, (61, 120), (300, 420)),
    ("Pérdida", 6, (121, 720), (150, 320)),
)


@dataclass(frozen=True)
class BureauReport:
    document_type: DocumentType
    document_number: str
    rating: str
    score: int
    total_debt: Decimal
    lenders_count: int
    max_days_past_due: int


def bureau_report(document_type: DocumentType, document_number: str) -> BureauReport:
    """The report for a normalised document number."""
    digest = hashlib.sha256(f"{document_type.value}:{document_number}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    rating, _share, (low_dpd, high_dpd), (low_score, high_score) = rng.choices(
        _RATINGS, weights=[share for _r, share, _d, _s in _RATINGS]
    )[0]
    lenders = rng.choice((0, 1, 1, 2, 2, 3, 4, 5)) if rating == "Normal" else rng.randint(1, 6)
    debt = sum((Decimal(rng.randrange(50_000, 3_000_000)) / 100 for _ in range(lenders)), Decimal("0.00"))
    return BureauReport(
        document_type=document_type,
        document_number=document_number,
        rating=rating,
        score=rng.randint(low_score, high_score),
        total_debt=debt,
        lenders_count=lenders,
        max_days_past_due=rng.randint(low_dpd, high_dpd) if lenders else 0,
    )
