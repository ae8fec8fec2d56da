"""Request and response schemas of the HTTP API (one module, so the OpenAPI docs and the code agree)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Event(BaseModel):
    """One activity of the lead: when, and what (an event type the model knows, e.g. pricing_page_view)."""

    timestamp: str = Field(description="ISO 8601 time; without a zone it is read as UTC",
                           examples=["2025-09-28T14:03:00Z"])
    type: str = Field(description="Event type, as in the training event log", examples=["pricing_page_view"])


class Lead(BaseModel):
    """A lead as in a lead list: its id, its attributes (any columns of the training file) and its events."""

    model_config = ConfigDict(extra="allow", json_schema_extra={
        "examples": [{"lead_id": "N0000001", "created_at": "2025-09-18T09:12:00Z", "industry": "software",
                      "employees": 120, "country": "DE", "lead_source": "webinar",
                      "events": [{"timestamp": "2025-09-20T10:00:00Z", "type": "pricing_page_view"}]}]})

    events: list[Event] = Field(default_factory=list, description="The lead's activity up to as_of")
    as_of: str | None = Field(default=None, description="Score as of this time (default: the request's, else now)")

    @model_validator(mode="before")
    @classmethod
    def _not_a_request(cls, data: Any) -> Any:
        if isinstance(data, dict) and "leads" in data:
            raise ValueError("a body with 'leads' is a list request; see the errors of its leads")
        return data


class ScoreRequest(BaseModel):
    """One call: a list of leads (or send a single lead object instead of this wrapper)."""

    leads: list[Lead] = Field(min_length=1, max_length=10_000)
    as_of: str | None = Field(default=None, description="Score every lead as of this time (default: now)")
    reasons: bool = Field(default=True, description="Add the top reasons per lead")


class Reason(BaseModel):
    feature: str
    value: str
    contribution: float = Field(description="Probability points this feature adds (negative: takes away)")
    text: str


class ScoredLead(BaseModel):
    """What `leadscore score` writes for the lead, as JSON."""

    model_config = ConfigDict(extra="allow")

    as_of: str
    probability: float
    score: int = Field(description="0-100")
    band: str
    base_rate: float | None = None
    reasons: list[Reason] | None = None


class ModelRef(BaseModel):
    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None


class ScoreResponse(BaseModel):
    model: ModelRef
    leads: list[ScoredLead]
    warnings: list[str] = Field(default_factory=list)


class ModelInfo(BaseModel):
    model: ModelRef
    learner: str | None = None
    training_window: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    bands: dict[str, Any] = Field(default_factory=dict)
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")


class Health(BaseModel):
    status: str
    model: ModelRef
