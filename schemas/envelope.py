"""The CloudEvents 1.0 envelope (structured mode) that every message travels in."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from schemas.common import DateTime

CONTENT_TYPE = "application/cloudevents+json"

DataT = TypeVar("DataT", bound=BaseModel)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 event in structured mode; `data` is one of our contract models.

    `tenant` is an extension attribute for multi-brand companies. Other extension attributes
    are kept as they are (extra fields are allowed on the envelope only).
    """

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = "1.0"
    id: str = Field(min_length=1, max_length=256)
    source: str = Field(min_length=1, max_length=512)
    type: str = Field(min_length=1, max_length=256)
    time: DateTime
    subject: str | None = Field(default=None, max_length=256)
    datacontenttype: Literal["application/json"] = "application/json"
    tenant: str | None = Field(default=None, max_length=128)
    data: DataT
