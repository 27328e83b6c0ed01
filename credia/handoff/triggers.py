"""The handoff triggers of ``policies/handoff.yml``, validated when read."""

from __future__ import annotations

import re
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Dict, List, Literal, Optional, Union

import yaml
from pydantic import BaseModel, Extra, ValidationError, confloat, conint

from credia import settings
from credia.values import plain

Priority = Literal["normal", "high", "urgent"]
PRIORITY_ORDER = {"normal": 0, "high": 1, "urgent": 2}


class HandoffPolicyError(ValueError):
    """The handoff file is missing or wrong; the message names the file and the field."""


class _Model(BaseModel):
    class Config:
        extra = Extra.forbid


class FallbackRule(_Model):
    count: conint(ge=1, le=10)  # type: ignore[valid-type]
    priority: Priority


class FrustrationRule(_Model):
    priority: Priority
    repeated_message: conint(ge=2, le=10)  # type: ignore[valid-type]
    shouting_ratio: confloat(gt=0, le=1)  # type: ignore[valid-type]
    min_letters: conint(ge=1)  # type: ignore[valid-type]
    words: List[str]


class HighValueRule(_Model):
    above: Decimal
    priority: Priority


class HandoffPolicy(_Model):
    explicit_request: Priority
    fallbacks_in_a_row: FallbackRule
    frustration: FrustrationRule
    verification_locked: Priority
    credit_referred: Priority
    cases: Dict[str, Priority]
    high_value: HighValueRule

    def priority_for(self, reason: str, amount: Optional[Decimal] = None) -> Priority:
        """The priority of a handoff for ``reason``, raised for high-value cases."""
        base: Priority = {
            "explicit_request": self.explicit_request,
            "fallbacks": self.fallbacks_in_a_row.priority,
            "frustration": self.frustration.priority,
            "verification_locked": self.verification_locked,
            "credit_referred": self.credit_referred,
        }.get(reason) or self.cases.get(reason, "normal")
        if amount is not None and amount > self.high_value.above:
            return max(base, self.high_value.priority, key=PRIORITY_ORDER.__getitem__)
        return base


def load_handoff_policy(path: Union[Path, str, None] = None) -> HandoffPolicy:
    path = Path(path or settings.env("CREDIA_HANDOFF_POLICY", str(settings.PROJECT_ROOT / "policies/handoff.yml")))
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise HandoffPolicyError(f"handoff policy file not found: {path} (set CREDIA_HANDOFF_POLICY)") from None
    except yaml.YAMLError as exc:
        raise HandoffPolicyError(f"{path}: not valid YAML: {exc}") from None
    try:
        return HandoffPolicy.parse_obj(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise HandoffPolicyError(f"{path}: field {'.'.join(map(str, first['loc']))}: {first['msg']}") from None


@lru_cache(maxsize=1)
def handoff_policy() -> HandoffPolicy:
    return load_handoff_policy()


def frustration_signal(text: str, rule: FrustrationRule) -> Optional[str]:
    """``insult`` or ``shouting`` when a single message shows it, else None (repetition needs the history)."""
    folded = plain(text)
    for word in rule.words:
        if re.search(rf"(?<![a-z]){re.escape(plain(word))}(?![a-z])", folded):
            return "insult"
    letters = [c for c in text if c.isalpha()]
    if len(letters) >= rule.min_letters and sum(c.isupper() for c in letters) / len(letters) >= rule.shouting_ratio:
        return "shouting"
    return None
