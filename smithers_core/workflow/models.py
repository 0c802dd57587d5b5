"""Typed outputs of decision approvals, and the auth context recorded on runs."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ApprovalDecision(BaseModel):
    """Output of ``Approval(mode="approve")``; wire keys ``decidedBy``, ``decidedAt``."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    approved: bool
    note: str | None = None
    decided_by: str | None = Field(default=None, alias="decidedBy")
    decided_at: str | None = Field(default=None, alias="decidedAt")


class Selection(BaseModel):
    """Output of ``Approval(mode="select")``."""

    selected: str | None = None
    notes: str | None = None


class Ranking(BaseModel):
    """Output of ``Approval(mode="rank")``."""

    ranked: list[str] = Field(default_factory=list)
    notes: str | None = None


class RunAuth(BaseModel):
    """``ctx.auth``: who started the run (``{triggeredBy, role, scopes, createdAt, tokenId}``)."""

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)
    triggered_by: str = Field(alias="triggeredBy")
    role: str
    scopes: list[str] = Field(default_factory=list)
    created_at: str = Field(alias="createdAt")
    token_id: str | None = Field(default=None, alias="tokenId")

    @classmethod
    def for_trigger(cls, kind: str, identity: Any = None) -> RunAuth:
        """The one helper every surface uses to record ``ctx.auth`` (D11).

        ``kind`` is ``"rpc"`` (the caller's identity), ``"server"`` (a ``start_server``
        token holder), ``"cron"``, ``"webhook:<key>"``, ``"timer"`` or ``"cli"``.
        """
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        if kind == "cron":
            return cls(triggeredBy="cron:gateway", role="system", scopes=["*"], createdAt=now)
        if kind == "timer":
            return cls(triggeredBy="timer:gateway", role="system", scopes=["*"], createdAt=now)
        if kind.startswith("webhook:"):
            return cls(triggeredBy=kind, role="system", scopes=["*"], createdAt=now)
        if kind in ("cli", "server"):
            return cls(triggeredBy=kind, role="operator", scopes=["*"], createdAt=now)
        user = getattr(identity, "user_id", None)
        return cls(
            triggeredBy=user or "gateway",
            role=getattr(identity, "role", None) or "operator",
            scopes=list(getattr(identity, "scopes", ()) or ()),
            createdAt=now,
            tokenId=getattr(identity, "token_id", None),
        )
