"""The ``jwt`` auth mode: verification (``provider.py``) plus two command-line capabilities,
issuing JWTs (``smithers token issue --jwt``, ``signing.py``) and describing them
(``smithers token inspect``, ``description.py``)."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import BaseModel

from smithers_auth_jwt.config import JwtConfig
from smithers_auth_jwt.description import describe_jwt
from smithers_auth_jwt.provider import JwtProvider
from smithers_auth_jwt.signing import ISSUE_HELP, add_issue_arguments, issue_jwt
from smithers_core.auth.capabilities import (
    CredentialDescription,
    CredentialRequest,
    IssuedCredential,
)


class JwtMode:
    """The ``jwt`` auth mode contributed through ``smithers_auth_modes``.

    ``now`` is the clock (seconds) of its providers and of the JWTs it issues; tests freeze it.
    """

    config_model: type[BaseModel] = JwtConfig
    issue_help = ISSUE_HELP

    def __init__(self, *, now: Callable[[], float] = time.time) -> None:
        self._now = now

    def create(self, config: BaseModel) -> JwtProvider:
        if not isinstance(config, JwtConfig):
            config = JwtConfig.model_validate(config.model_dump())
        return JwtProvider(config, now=self._now)

    def add_issue_arguments(self, parser: argparse.ArgumentParser) -> None:
        add_issue_arguments(parser)

    def issue(
        self, request: CredentialRequest, args: argparse.Namespace, settings: Mapping[str, Any]
    ) -> IssuedCredential:
        return issue_jwt(request, args, settings, self._now())

    def describe_credential(
        self, credential: str, *, configured: bool
    ) -> CredentialDescription | None:
        return describe_jwt(credential, self._now())


__all__ = ["JwtMode"]
