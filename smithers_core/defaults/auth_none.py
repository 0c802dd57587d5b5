"""Plugin ``core.auth_none``: auth mode ``none`` (every request is an anonymous operator).

The Host and Origin gates still apply to unauthenticated loopback binds (core enforces them).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from smithers_core.auth import ANONYMOUS_OPERATOR, AuthMode, AuthRequest, Identity
from smithers_core.hookspecs import hookimpl


class NoAuthConfig(BaseModel):
    model_config = ConfigDict(extra="allow")


class NoAuthProvider:
    async def authenticate(self, req: AuthRequest) -> Identity:
        return ANONYMOUS_OPERATOR


class NoAuthMode:
    config_model: type[BaseModel] = NoAuthConfig

    def create(self, config: BaseModel) -> NoAuthProvider:
        return NoAuthProvider()


@hookimpl
def smithers_auth_modes() -> dict[str, AuthMode]:
    return {"none": NoAuthMode()}
