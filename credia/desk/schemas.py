"""Bodies of the desk's service API (pydantic v1): the contract an assistant, or a lender's own desk, speaks.

Limits keep one request from filling the database or a console: a transcript of at most 500 turns, texts of at
most 4,000 characters, a handful of attachments. Unknown fields are ignored so the assistant can send more later.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Dict, List, Optional

from pydantic import BaseModel, Field, StrictBool, conint, constr, root_validator, validator

from credia.desk.models import Priority, TicketKind

MAX_TEXT = 4000
MAX_TRANSCRIPT = 500
MAX_VALUES = 100
MAX_OFFERS = 20
MAX_ATTACHMENTS = 10

if TYPE_CHECKING:
    ConversationId = str
    ShortText = str
    LongText = str
    Code = str
    CountryCode = str
    Rating = int
else:
    ConversationId = constr(strip_whitespace=True, min_length=1, max_length=255)
    ShortText = constr(strip_whitespace=True, max_length=120)
    LongText = constr(max_length=MAX_TEXT)
    Code = constr(strip_whitespace=True, min_length=1, max_length=64)
    CountryCode = constr(regex=r"^[A-Za-z]{2}$")
    Rating = conint(ge=1, le=5)


def aware(value: datetime) -> datetime:
    """A timestamp without an offset is taken as UTC rather than refused."""
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


class CustomerIn(BaseModel):
    customer_id: Optional[ShortText] = Field(None, description="The lender's customer id, once verified.")
    name: Optional[ShortText] = None
    verified: StrictBool = Field(False, description="Whether the customer proved who they are in this session.")
    document: Optional[ShortText] = Field(None, description="Identity document, masked (e.g. ****410).")


class TranscriptTurn(BaseModel):
    role: constr(regex=r"^(customer|bot|agent)$")  # type: ignore[valid-type]
    text: LongText
    at: datetime

    _aware = validator("at", allow_reuse=True)(aware)


class HandoffIn(BaseModel):
    conversation_id: ConversationId
    channel: Code
    reason: Code
    priority: Priority = Priority.NORMAL
    customer: CustomerIn = Field(default_factory=CustomerIn)
    journey: Optional[Code] = None
    values: Dict[Code, Any] = Field(default_factory=dict, description="Slots captured so far.")
    offers: List[Any] = Field(default_factory=list, description="Offers shown to the customer.")
    transcript: List[TranscriptTurn] = Field(default_factory=list, description="The conversation so far.")
    country: Optional[CountryCode] = Field(None, description="Whose business hours apply (default: the desk's).")

    @validator("values")
    def _few_values(cls, value: Dict[str, Any]) -> Dict[str, Any]:
        if len(value) > MAX_VALUES:
            raise ValueError(f"at most {MAX_VALUES} values")
        return value

    @validator("offers")
    def _few_offers(cls, value: List[Any]) -> List[Any]:
        if len(value) > MAX_OFFERS:
            raise ValueError(f"at most {MAX_OFFERS} offers")
        return value

    @validator("transcript")
    def _short_transcript(cls, value: List[TranscriptTurn]) -> List[TranscriptTurn]:
        if len(value) > MAX_TRANSCRIPT:
            raise ValueError(f"at most {MAX_TRANSCRIPT} turns; send the latest ones")
        return value


class CustomerMessageIn(BaseModel):
    event_id: constr(strip_whitespace=True, min_length=1, max_length=300)  # type: ignore[valid-type]
    text: LongText = ""
    at: datetime
    attachments: List[Dict[str, Any]] = Field(default_factory=list)

    _aware = validator("at", allow_reuse=True)(aware)

    @validator("attachments")
    def _few_attachments(cls, value: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        if len(value) > MAX_ATTACHMENTS:
            raise ValueError(f"at most {MAX_ATTACHMENTS} attachments")
        return value

    @root_validator(skip_on_failure=True)
    def _something(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        if not values["text"].strip() and not values["attachments"]:
            raise ValueError("a message needs a text or an attachment")
        return values


class TicketIn(BaseModel):
    conversation_id: ConversationId
    kind: TicketKind
    callback_at: Optional[datetime] = Field(None, description="Required for a callback: one of the offered slots.")
    contact: Optional[ShortText] = Field(None, description="Where to call or write back, when not the channel.")
    summary: LongText = ""
    customer: CustomerIn = Field(default_factory=CustomerIn)

    _aware = validator("callback_at", allow_reuse=True)(lambda value: aware(value) if value else value)

    @root_validator(skip_on_failure=True)
    def _callback_has_time(cls, values: Dict[str, Any]) -> Dict[str, Any]:
        if values["kind"] is TicketKind.CALLBACK and values.get("callback_at") is None:
            raise ValueError("callback_at is required for a callback")
        return values


class SurveyIn(BaseModel):
    rating: Rating


class HandoffOpenedOut(BaseModel):
    """201 (queued) or 200 (already in handoff, or nobody can take it now: ``handoff_id`` null)."""

    handoff_id: Optional[int]
    status: str = Field(..., description="queued, assigned, closed or no_agents")
    position: Optional[int] = Field(None, description="Place in the queue, 1 first, while queued.")
    next_open_at: Optional[datetime] = Field(None, description="When people next attend (closed only).")
    callback_slots: List[datetime] = Field(default_factory=list, description="Next callback slots to offer.")


class HandoffStatusOut(BaseModel):
    handoff_id: int
    conversation_id: str
    status: str = Field(..., description="queued, assigned or resolved")
    position: Optional[int]
    agent: Optional[str] = Field(None, description="Display name of the agent who has it.")
    outcome: Optional[str]
    created_at: datetime
    assigned_at: Optional[datetime]
    resolved_at: Optional[datetime]


class MessageAcceptedOut(BaseModel):
    status: str = Field("accepted", description="accepted, or duplicate for an event_id already received")


class TicketOut(BaseModel):
    ticket_id: int
    code: str


class SurveyOut(BaseModel):
    handoff_id: int
    rating: int


class ErrorOut(BaseModel):
    detail: str
