"""``smithers token inspect``: what a credential grants under the configured auth mode.

Facts about every credential (its ``tokenId`` and grant-key digest), then what the installed
modes can tell about it (the ``CredentialDescriber`` capability: ``smithers_auth_jwt`` decodes a
JWT's header and claims, unverified), the matching grant when the configured mode is ``token``,
and the verdict of the configured mode's own provider. Mode ``none`` means auth is off (core's
default). It never prints a secret or the configured keys of the grants map.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anyio
from pydantic import ValidationError

from smithers_auth_token.grants import find_grant, grant_key, iso_ms, parse_tokens_text
from smithers_auth_token.provider import MODE
from smithers_core.auth import ANONYMOUS_OPERATOR, AuthMode, AuthRequest, Identity
from smithers_core.auth.capabilities import CredentialDescriber, CredentialDescription
from smithers_core.auth.tokens import token_id
from smithers_core.config import load_config
from smithers_core.contributions import CliHost
from smithers_core.errors import SmithersError

AUTH_OFF = "none"
AUTH_OFF_NOTE = (
    "auth is off: every request (that passes the Host/Origin gates) is an anonymous "
    "operator; the token is not looked at"
)
_CORE_AUTH_KEYS = {"mode", "allowed_origins", "allowedOrigins"}


def read_token(value: str) -> str:
    """The token argument, or one line of stdin for ``-``."""
    token = sys.stdin.readline() if value == "-" else value
    token = token.strip()
    if not token:
        raise SmithersError("INVALID_INPUT", "No token given")
    return token


def _grant_table(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            return parse_tokens_text(raw)
        except ValueError as exc:
            raise SmithersError("CONFIG_INVALID", f"Invalid tokens: {exc}") from None
    if isinstance(raw, dict) and isinstance(raw.get("tokens"), dict):
        raw = raw["tokens"]
    return dict(raw) if isinstance(raw, dict) else {}


def configured_grants(auth: Mapping[str, Any]) -> dict[str, Any]:
    """The token mode's grants: inline ``tokens`` plus ``tokens_file``. The config loader puts
    the file's text into ``tokens`` unless ``tokens`` is inline; then the file is read here."""
    grants = _grant_table(auth.get("tokens"))
    path = auth.get("tokens_file")
    if isinstance(path, str) and not isinstance(auth.get("tokens"), str) and Path(path).is_file():
        grants.update(_grant_table(Path(path).read_text(encoding="utf-8")))
    return grants


def verdict_by_grant(grant: Mapping[str, Any] | None, now_ms: int) -> tuple[str, str | None]:
    """The token mode's verdict from the grant alone (when its provider cannot be built);
    upstream 6.3 rules: revocation before expiry."""
    if grant is None:
        return "rejected", "Invalid token"
    revoked = grant.get("revokedAtMs")
    if isinstance(revoked, int | float) and revoked <= now_ms:
        return "rejected", "Token has been revoked"
    expires = grant.get("expiresAtMs")
    if isinstance(expires, int | float) and expires <= now_ms:
        return "rejected", "Token expired; issue a refreshed token."
    return "accepted (by grant)", None


def _validation_summary(exc: ValidationError) -> str:
    # include_input=False: the offending values (a secret!) are never printed.
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(section)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def mode_verdict(
    modes: Mapping[str, AuthMode], auth: Mapping[str, Any], mode: str, token: str
) -> tuple[str, Identity | str]:
    """Ask the configured mode's provider. ``("accepted", Identity)``, ``("rejected", why)``,
    or ``("unavailable", why)``."""
    impl = modes.get(mode)
    if impl is None:
        installed = ", ".join(sorted(modes)) or "(none)"
        return "unavailable", (
            f"no installed plugin provides auth mode '{mode}' (installed modes: {installed})"
        )
    data = {k: v for k, v in auth.items() if k not in _CORE_AUTH_KEYS}
    try:
        provider = impl.create(impl.config_model.model_validate(data))
    except ValidationError as exc:
        return "unavailable", f"invalid [auth] settings: {_validation_summary(exc)}"
    except SmithersError as exc:
        return "unavailable", exc.message
    request = AuthRequest(
        transport="http",
        headers={"authorization": f"Bearer {token}"},
        token=token,
        peer=None,
        path="/v1/rpc/getRun",
    )
    try:
        return "accepted", anyio.run(provider.authenticate, request)
    except SmithersError as exc:
        return "rejected", exc.message


def describe(
    modes: Mapping[str, AuthMode], token: str, configured: str
) -> dict[str, CredentialDescription]:
    """What each installed mode can tell about the token, by mode name."""
    found: dict[str, CredentialDescription] = {}
    for name in sorted(modes):
        mode = modes[name]
        if isinstance(mode, CredentialDescriber):
            description = mode.describe_credential(token, configured=name == configured)
            if description is not None:
                found[name] = description
    return found


def judge(host: CliHost, auth: Mapping[str, Any], token: str, report: dict[str, Any]) -> list[str]:
    """Fill ``report`` with what the modes say (kind, grant, note, verdict); returns the
    modes' descriptions of the credential for people."""
    mode = report["mode"]
    modes: dict[str, AuthMode] = {}
    modes_error: str | None = None
    try:
        modes = host.auth_modes()
    except SmithersError as exc:  # two plugins provide one mode: no verdict can be asked
        modes_error = exc.message
    descriptions = describe(modes, token, mode)
    kind = next((d for d in descriptions.values() if d.kind), None)
    report["kind"] = kind.kind if kind and kind.kind else "opaque"
    if kind and kind.kind:
        report[kind.kind] = dict(kind.facts)
    if mode == MODE:
        found = find_grant(token, configured_grants(auth))
        if found:
            how, grant = found
            report["grant"] = {"matchedBy": how, **grant}
    configured = descriptions.get(mode, CredentialDescription())
    if mode == AUTH_OFF:
        report["note"] = AUTH_OFF_NOTE
    elif configured.note:
        report["note"] = configured.note
    verdict: str | None = None
    detail: Identity | str | None = None
    if mode == AUTH_OFF:
        verdict, detail = "accepted", ANONYMOUS_OPERATOR
    elif modes_error is not None:
        verdict, detail = "unavailable", modes_error
    elif configured.uses_credentials:
        verdict, detail = mode_verdict(modes, auth, mode, token)
    if verdict == "unavailable" and mode == MODE:
        verdict, detail = verdict_by_grant(report.get("grant"), time.time_ns() // 1_000_000)
    if verdict is not None:
        report["verdict"] = verdict
        if isinstance(detail, Identity):
            report["identity"] = detail.to_wire()
        elif detail is not None:
            report["reason"] = detail
    return [d.text for d in descriptions.values() if d.text]


def inspect_token(host: CliHost, args: argparse.Namespace) -> int:
    """Print the report (JSON with ``--json``); exit 0 when accepted or auth is off, else 1."""
    token = read_token(args.token)
    config = load_config(args.config)
    report: dict[str, Any] = {
        "tokenId": token_id(token),
        "digest": grant_key(token),
        "mode": str(config.auth.get("mode") or AUTH_OFF),
        "config": str(config.path) if config.path else None,
    }
    texts = judge(host, dict(config.auth), token, report)
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        print_report(report, texts)
    return 1 if report.get("verdict") in ("rejected", "unavailable") else 0


def print_report(report: Mapping[str, Any], texts: list[str]) -> None:
    """The report for people; ``texts`` are the modes' descriptions of the credential."""
    print(f"Token kind: {report['kind']}")
    print(f"tokenId:    {report['tokenId']}")
    print(f"digest:     {report['digest']}")
    for text in texts:
        print(f"\n{text}")
    where = report["config"] or "no config file"
    print(f"\nConfigured auth mode: {report['mode']} ({where})")
    if "grant" in report:
        grant = report["grant"]
        print(f"Grant (matched by {grant['matchedBy']}):")
        for key in ("role", "scopes", "userId", "tokenId"):
            if key in grant:
                print(f"  {key}: {json.dumps(grant[key])}")
        for key in ("issuedAtMs", "expiresAtMs", "revokedAtMs"):
            value = grant.get(key)
            if isinstance(value, int | float):
                print(f"  {key}: {int(value)} ({iso_ms(value)})")
    elif report["mode"] == MODE:
        print("No grant in the configured tokens matches this token.")
    if "note" in report:
        print(f"Note: {report['note']}")
    if "verdict" in report:
        line = f"Verdict: {report['verdict']}"
        if "reason" in report:
            line += f": {report['reason']}"
        print(line)
        if "identity" in report:
            print(f"Identity: {json.dumps(report['identity'])}")


__all__ = [
    "configured_grants",
    "describe",
    "inspect_token",
    "judge",
    "mode_verdict",
    "print_report",
    "read_token",
    "verdict_by_grant",
]
