"""Identity: what an auth mode turns a request into, and the interface modes implement.

Auth is two steps (as in Jupyter Server): an auth *mode* provider turns a request's credentials
into an :class:`Identity` (or raises ``SmithersError("UNAUTHORIZED", ...)``); the scope model
(``smithers_core.scopes``) then decides what that identity may do.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel

Peer = tuple[str, int] | Literal["unix"] | None


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: ``{role, scopes, userId, tokenId}`` on the wire."""

    role: str = "operator"
    scopes: tuple[str, ...] = ("*",)
    user_id: str | None = None
    token_id: str | None = None

    def to_wire(self) -> dict[str, Any]:
        return {
            "role": self.role,
            "scopes": list(self.scopes),
            "userId": self.user_id,
            "tokenId": self.token_id,
        }


@dataclass(frozen=True, slots=True)
class AuthRequest:
    """What an auth provider may look at. Frozen; headers are lower-cased.

    ``peer`` is the socket peer ``(host, port)``, ``"unix"`` or None; never a forwarded header.
    ``token`` is the credential extracted by core (``x-smithers-key``, then ``Authorization``
    with an optional ``Bearer`` prefix, then the ``smithers_session`` cookie, or the WebSocket
    ``connect`` params' ``auth.token``).
    """

    transport: Literal["http", "ws"]
    headers: Mapping[str, str] = field(default_factory=dict)
    cookies: Mapping[str, str] = field(default_factory=dict)
    peer: Peer = None
    token: str | None = None
    path: str = "/"


@runtime_checkable
class AuthProvider(Protocol):
    """A configured auth mode. ``authenticate`` raises ``SmithersError("UNAUTHORIZED")``."""

    async def authenticate(self, req: AuthRequest) -> Identity: ...


@runtime_checkable
class AuthMode(Protocol):
    """An auth mode a plugin contributes: a config model and a factory for providers."""

    config_model: type[BaseModel]

    def create(self, config: BaseModel) -> AuthProvider: ...


ANONYMOUS_OPERATOR = Identity(role="operator", scopes=("*",), user_id=None, token_id=None)
"""The identity of every request when auth is off (mode ``none``)."""

__all__ = ["ANONYMOUS_OPERATOR", "AuthMode", "AuthProvider", "AuthRequest", "Identity", "Peer"]
