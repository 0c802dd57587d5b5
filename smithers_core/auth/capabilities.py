"""Optional capabilities of an auth mode, used by the ``smithers`` command line.

An :class:`~smithers_core.auth.AuthMode` may implement any of these protocols besides
``config_model`` and ``create``. Commands find them with ``isinstance`` on the modes of
``host.auth_modes()``, so no command names a mode and no plugin imports another:

* :class:`CredentialIssuer` mints credentials: ``smithers token issue --<mode>``;
* :class:`CredentialDescriber` explains a credential to ``smithers token inspect``;
* :class:`OperatorAccessProvider` gives ``smithers gateway`` an operator credential at start-up
  (a persistent one on the first run, or one for this session only).

``settings`` is always the raw ``[auth]`` section of the configuration (after the ``_file`` and
``_env`` rules), not yet validated by the mode's ``config_model``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(frozen=True, slots=True)
class CredentialRequest:
    """What ``smithers token issue`` asks for, whatever the mode: who, which scopes, how long.

    ``ttl_seconds`` is the ``--ttl`` lifetime, None when it was not given (the mode's default
    applies) or when it was ``never``; ``expires`` is False only for ``--ttl never``.
    """

    role: str
    scopes: tuple[str, ...]
    user_id: str | None = None
    ttl_seconds: int | None = None
    expires: bool = True


@dataclass(frozen=True, slots=True)
class IssuedCredential:
    """A new credential: ``report`` is printed as JSON with ``--json``, ``text`` otherwise."""

    report: Mapping[str, Any]
    text: str


@runtime_checkable
class CredentialIssuer(Protocol):
    """An auth mode that mints credentials: ``smithers token issue --<mode name>``.

    ``issue_help`` is the flag's help. ``add_issue_arguments(parser)`` adds the mode's own
    options to the ``issue`` parser (each plugin keeps to option names of its own).
    ``issue(request, args, settings)`` runs when the flag is given: ``args`` holds those options
    (and ``config``), ``settings`` is the ``[auth]`` section when the configuration selects this
    mode, else empty (defaults only). Invalid input raises ``SmithersError("INVALID_INPUT")``.
    """

    issue_help: str

    def add_issue_arguments(self, parser: argparse.ArgumentParser) -> None: ...

    def issue(
        self, request: CredentialRequest, args: argparse.Namespace, settings: Mapping[str, Any]
    ) -> IssuedCredential: ...


@dataclass(frozen=True, slots=True)
class CredentialDescription:
    """What one auth mode can tell about a credential (``smithers token inspect``).

    ``kind`` names the credential's format when the mode recognises it (``"jwt"``); its decoded
    ``facts`` (JSON; never verified, never a secret) are reported under that kind and ``text``
    shows them to people. ``note`` is what the configured mode says about credentials;
    ``uses_credentials=False`` means that mode does not authenticate bearer credentials at all,
    so inspect asks it for no verdict.
    """

    kind: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)
    text: str = ""
    note: str | None = None
    uses_credentials: bool = True


@runtime_checkable
class CredentialDescriber(Protocol):
    """An auth mode that can explain a credential to ``smithers token inspect``.

    ``describe_credential(credential, configured=...)`` returns None when it has nothing to
    say; ``configured`` is True when the configuration selects this mode.
    """

    def describe_credential(
        self, credential: str, *, configured: bool
    ) -> CredentialDescription | None: ...


@dataclass(frozen=True, slots=True)
class OperatorAccess:
    """What an auth mode did for the gateway's operator at start-up.

    ``settings`` is the ``[auth]`` section the gateway starts with (for example with a session
    grant added); ``note`` is one line for the start-up banner and ``credential``, when set, is
    printed once under it.
    """

    settings: Mapping[str, Any]
    note: str | None = None
    credential: str | None = None


@runtime_checkable
class OperatorAccessProvider(Protocol):
    """An auth mode that can hand ``smithers gateway``'s operator a credential.

    Called once before the gateway is built, with the configured ``[auth]`` section. On a first
    run it may create a persistent credential (mode ``token`` writes a missing ``tokens_file``);
    otherwise, with ``session=True`` (``--session-token``), one valid only while the process
    runs, never written to disk.
    """

    def operator_access(self, settings: Mapping[str, Any], *, session: bool) -> OperatorAccess: ...


__all__ = [
    "CredentialDescriber",
    "CredentialDescription",
    "CredentialIssuer",
    "CredentialRequest",
    "IssuedCredential",
    "OperatorAccess",
    "OperatorAccessProvider",
]
