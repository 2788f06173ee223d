"""The base of every section of the deploy config (validation's checks, warm-up, the bake): unknown fields
are refused, so a typo is an error naming the field, never a silently ignored setting. Below both the
validation and the bake packages, so that neither imports the other for it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)
