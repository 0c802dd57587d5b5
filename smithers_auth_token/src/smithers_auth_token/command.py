"""``smithers token issue|inspect``: make credentials and explain what a credential grants.

``issue`` prints a new opaque token (``secrets.token_urlsafe(32)``) with its grant for the token
mode, keyed by the token's ``sha256:<hex>`` digest (D11) so the token itself never sits in a
config file; with ``--jwt`` it prints a signed HS256/384/512 JWT instead (PyJWT is imported only
then; it comes with the ``smithers-auth-jwt`` distribution).

``inspect`` is mode-aware: it decodes a JWT's header and claims, looks an opaque token's grant
up by digest in the configured grants, and asks the configured auth mode's own provider whether
it accepts the token. It never prints a secret or the configured keys of the grants map.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import secrets
import sys
import time
import tomllib
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from smithers_core.auth import AuthRequest, Identity
from smithers_core.config import SmithersConfig, load_config
from smithers_core.errors import SmithersError

DIGEST_PREFIX = "sha256:"
_CORE_AUTH_KEYS = {"mode", "allowed_origins", "allowedOrigins"}
_TTL_RE = re.compile(r"(\d+)([smhdw]?)")
_TTL_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_HMAC_MIN_BYTES = {"HS256": 32, "HS384": 48, "HS512": 64}
_JWT_MISSING = (
    "--jwt needs PyJWT, which comes with the JWT auth plugin: "
    "pip install smithers-auth-jwt (from a checkout: pip install -e ./smithers_auth_jwt)"
)


# -- helpers ---------------------------------------------------------------------------------
def token_digest(token: str) -> str:
    """``sha256:<hex>`` of the token: the grant key ``issue`` prints (D11)."""
    return DIGEST_PREFIX + hashlib.sha256(token.encode("utf-8")).hexdigest()


def token_id(token: str) -> str:
    """The first 16 hex chars of sha256(token) (upstream's default ``tokenId``)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()[:16]


def parse_ttl(text: str) -> int | None:
    """``90``, ``45s``, ``30m``, ``1h``, ``7d``, ``2w``, ``1h30m`` -> seconds; ``never`` -> None."""
    value = text.strip().lower()
    if value in ("never", "none", "0"):
        return None
    pos, total = 0, 0
    for match in _TTL_RE.finditer(value):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _TTL_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(value) or not value or total <= 0:
        raise SmithersError(
            "INVALID_INPUT", f"Invalid --ttl {text!r}; use e.g. 3600, 45s, 30m, 1h, 7d or never"
        )
    return total


def split_scopes(values: list[str]) -> list[str]:
    out: list[str] = []
    for value in values:
        out.extend(s for s in re.split(r"[\s,]+", value.strip()) if s)
    return list(dict.fromkeys(out))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def grant_toml(table: str, grant: Mapping[str, Any]) -> str:
    lines = [f"[{table}]"]
    lines += [f"{key} = {_toml_value(value)}" for key, value in grant.items() if value is not None]
    return "\n".join(lines) + "\n"


def _iso_ms(ms: int | float) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    )


def _iso_s(seconds: int | float) -> str:
    return _iso_ms(seconds * 1000)


def _load_config(path: str | None) -> SmithersConfig:
    return load_config(path)


def _auth_section(config: SmithersConfig) -> dict[str, Any]:
    return dict(config.auth)


def _read_secret_file(path: str) -> str:
    file = Path(path)
    if not file.is_file():
        raise SmithersError("INVALID_INPUT", f"--secret-file {path} does not exist")
    # Same rule as the config loader's `secret_file`, so both sides agree on the key bytes.
    return file.read_text(encoding="utf-8").rstrip("\n")


# -- issue -----------------------------------------------------------------------------------
def _issue(args: argparse.Namespace) -> int:
    scopes = split_scopes(args.scopes)
    if not scopes:
        raise SmithersError("INVALID_INPUT", "--scopes must name at least one scope")
    if args.jwt:
        return _issue_jwt(args, scopes)
    return _issue_opaque(args, scopes)


def _issue_opaque(args: argparse.Namespace, scopes: list[str]) -> int:
    ttl = parse_ttl(args.ttl) if args.ttl else None
    token = secrets.token_urlsafe(32)
    digest = token_digest(token)
    issued_ms = time.time_ns() // 1_000_000
    grant: dict[str, Any] = {
        "role": args.role,
        "scopes": scopes,
        "userId": args.user,
        "tokenId": token_id(token),
        "issuedAtMs": issued_ms,
        "expiresAtMs": issued_ms + ttl * 1000 if ttl is not None else None,
    }
    file_snippet = grant_toml(json.dumps(digest), grant)
    if args.tokens_file:
        _append_grant(Path(args.tokens_file), file_snippet)
    if args.json:
        out = {
            "kind": "opaque",
            "token": token,
            "digest": digest,
            "grant": {k: v for k, v in grant.items() if v is not None},
        }
        print(json.dumps(out, indent=2))
        return 0
    expiry = f"expires {_iso_ms(grant['expiresAtMs'])}" if ttl is not None else "does not expire"
    print("New token (shown once; only its digest goes into the config):\n")
    print(f"  {token}\n")
    if args.tokens_file:
        print(f"Grant appended to {args.tokens_file} ({expiry}):\n")
    else:
        print(f"Grant for .smithers/tokens.toml ({expiry}):\n")
    print(file_snippet)
    print('Or inline in smithers.toml, under [auth] with mode = "token":\n')
    print(grant_toml(f"auth.tokens.{json.dumps(digest)}", grant))
    print(f"tokenId: {grant['tokenId']}")
    return 0


def _append_grant(path: Path, snippet: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "a", encoding="utf-8") as fh:
        if fh.tell() > 0:
            fh.write("\n")
        fh.write(snippet)


def _issue_jwt(args: argparse.Namespace, scopes: list[str]) -> int:
    try:
        import jwt
    except ImportError:
        raise SmithersError("PLUGIN_MISSING", _JWT_MISSING) from None
    config = _load_config(args.config)
    auth = _auth_section(config)
    from_config = auth if auth.get("mode") == "jwt" else {}

    def setting(flag: Any, *keys: str) -> Any:
        if flag not in (None, []):
            return flag
        for key in keys:
            if from_config.get(key) not in (None, "", []):
                return from_config[key]
        return None

    issuer = setting(args.issuer, "issuer")
    audience = setting(split_scopes(args.audience or []), "audience")
    if not issuer or not audience:
        raise SmithersError(
            "INVALID_INPUT",
            '--jwt needs --issuer and --audience (or a config file with [auth] mode = "jwt")',
        )
    if args.secret_file:
        secret = _read_secret_file(args.secret_file)
    elif args.secret_env:
        if args.secret_env not in os.environ:
            raise SmithersError("INVALID_INPUT", f"--secret-env {args.secret_env} is not set")
        secret = os.environ[args.secret_env]
    else:
        secret = from_config.get("secret") or ""
    if not secret:
        raise SmithersError(
            "INVALID_INPUT",
            "--jwt needs the HMAC secret: --secret-file F, --secret-env VAR, or a config file "
            'with [auth] mode = "jwt" and secret_file / secret_env',
        )
    configured = [a for a in from_config.get("algorithms") or [] if a in _HMAC_MIN_BYTES]
    algorithm = args.algorithm or (configured[0] if configured else "HS256")
    weak_ok = args.allow_weak_secret or bool(
        from_config.get("allow_weak_secret") or from_config.get("allowWeakSecret")
    )
    needed = _HMAC_MIN_BYTES[algorithm]
    if len(secret.encode("utf-8")) < needed and not weak_ok:
        raise SmithersError(
            "INVALID_INPUT",
            f"The HMAC secret is shorter than {needed} bytes, which {algorithm} needs "
            "(the jwt mode refuses it too); pass --allow-weak-secret to sign anyway",
        )
    ttl = parse_ttl(args.ttl or "1h")
    if ttl is None:
        raise SmithersError("INVALID_INPUT", "A JWT needs an expiry; --ttl never is not allowed")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": audience[0] if isinstance(audience, list) and len(audience) == 1 else audience,
        "iat": now,
        "exp": now + ttl,
        "jti": secrets.token_hex(8),
    }
    claims[str(from_config.get("role_claim") or from_config.get("roleClaim") or "role")] = args.role
    scopes_claim = from_config.get("scopes_claim") or from_config.get("scopesClaim") or "scope"
    claims[str(scopes_claim)] = " ".join(scopes)
    if args.user:
        claims[str(from_config.get("user_claim") or from_config.get("userClaim") or "sub")] = (
            args.user
        )
    try:
        token = jwt.encode(claims, secret, algorithm=algorithm, headers={"typ": "JWT"})
    except jwt.exceptions.InvalidKeyError as exc:
        raise SmithersError("INVALID_INPUT", f"The secret cannot be used: {exc}") from None
    if args.json:
        out = {"kind": "jwt", "token": token, "tokenId": token_id(token), "claims": claims}
        print(json.dumps(out, indent=2))
        return 0
    print(f"New JWT ({algorithm}, expires {_iso_s(claims['exp'])}):\n")
    print(f"  {token}\n")
    print("Claims:")
    print(json.dumps(claims, indent=2))
    print(f"\ntokenId: {token_id(token)}")
    return 0


# -- inspect ---------------------------------------------------------------------------------
def _b64json(segment: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def decode_jwt_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """``(header, claims)`` when the token is shaped like a JWT, else None. Not verified."""
    parts = token.split(".")
    if len(parts) != 3 or not all(parts):
        return None
    try:
        header, claims = _b64json(parts[0]), _b64json(parts[1])
    except (ValueError, binascii.Error, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict) or "alg" not in header:
        return None
    return header, claims


def _grant_table(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = tomllib.loads(raw)
        except tomllib.TOMLDecodeError as exc:
            raise SmithersError(
                "CONFIG_INVALID", f"The tokens file is not valid TOML: {exc}"
            ) from None
    if isinstance(raw, dict) and isinstance(raw.get("tokens"), dict):
        raw = raw["tokens"]
    return dict(raw) if isinstance(raw, dict) else {}


def _grants(auth: Mapping[str, Any]) -> dict[str, Any]:
    """The token mode's grants: inline ``tokens`` plus ``tokens_file`` (top level or under
    ``[tokens]``). The config loader puts the file's text into ``tokens`` unless ``tokens`` is
    inline, in which case the file is read here."""
    grants = _grant_table(auth.get("tokens"))
    path = auth.get("tokens_file")
    if isinstance(path, str) and not isinstance(auth.get("tokens"), str) and Path(path).is_file():
        grants.update(_grant_table(Path(path).read_text(encoding="utf-8")))
    return grants


def find_grant(token: str, grants: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``(how, grant)``: by ``sha256:<hex>`` digest or by the plain token as key."""
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    for key, grant in grants.items():
        if not isinstance(grant, dict):
            continue
        if key.lower().startswith(DIGEST_PREFIX):
            candidate = key[len(DIGEST_PREFIX) :].lower()
            if hmac.compare_digest(candidate.encode(), digest.encode()):
                return "digest", grant
        elif hmac.compare_digest(key.encode("utf-8"), token.encode("utf-8")):
            return "plain", grant
    return None


def _grant_verdict(grant: Mapping[str, Any], now_ms: int) -> str | None:
    """Upstream 6.3 rules: revocation before expiry. None when the grant is usable."""
    revoked = grant.get("revokedAtMs")
    if isinstance(revoked, int | float) and revoked <= now_ms:
        return "Token has been revoked"
    expires = grant.get("expiresAtMs")
    if isinstance(expires, int | float) and expires <= now_ms:
        return "Token expired; issue a refreshed token."
    return None


def _validation_summary(exc: ValidationError) -> str:
    # include_input=False: the offending values (a secret!) are never printed.
    parts = []
    for err in exc.errors(include_input=False, include_url=False):
        loc = ".".join(str(p) for p in err["loc"]) or "(section)"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _mode_verdict(config: SmithersConfig, mode: str, token: str) -> tuple[str, Any]:
    """Ask the configured mode's provider. ``("accepted", Identity)``, ``("rejected", msg)``,
    or ``("unavailable", why)``."""
    import anyio

    from smithers_core.plugins import load_plugins

    host = load_plugins(config.plugins, strict=False)
    try:
        modes = host.auth_modes()
    except SmithersError as exc:
        return "unavailable", exc.message
    impl = modes.get(mode)
    if impl is None:
        installed = ", ".join(sorted(modes)) or "(none)"
        return "unavailable", (
            f"no installed plugin provides auth mode '{mode}' (installed modes: {installed})"
        )
    data = {k: v for k, v in config.auth.items() if k not in _CORE_AUTH_KEYS}
    try:
        mode_config = impl.config_model.model_validate(data)
        provider = impl.create(mode_config)
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
        identity = anyio.run(provider.authenticate, request)
    except SmithersError as exc:
        return "rejected", exc.message
    return "accepted", identity


def _read_token(value: str) -> str:
    token = sys.stdin.readline() if value == "-" else value
    token = token.strip()
    if not token:
        raise SmithersError("INVALID_INPUT", "No token given")
    return token


def _inspect(args: argparse.Namespace) -> int:
    token = _read_token(args.token)
    config = _load_config(args.config)
    auth = _auth_section(config)
    mode = str(auth.get("mode") or "none")
    report: dict[str, Any] = {
        "tokenId": token_id(token),
        "digest": token_digest(token),
        "mode": mode,
        "config": str(config.path) if config.path else None,
    }
    decoded = decode_jwt_unverified(token)
    report["kind"] = "jwt" if decoded else "opaque"
    if decoded:
        header, claims = decoded
        report["jwt"] = {"header": header, "claims": claims}
    now_ms = time.time_ns() // 1_000_000
    if mode == "token":
        found = find_grant(token, _grants(auth))
        if found:
            how, grant = found
            report["grant"] = {"matchedBy": how, **grant}
    verdict: str | None = None
    detail: Any = None
    if mode == "none":
        verdict = "accepted"
        detail = Identity()
        report["note"] = (
            "auth is off: every request (that passes the Host/Origin gates) is an anonymous "
            "operator; the token is not looked at"
        )
    elif mode == "trusted-proxy":
        report["note"] = (
            "trusted-proxy mode does not use bearer tokens: identity comes from headers set by "
            "a proxy in trusted_proxies"
        )
    else:
        verdict, detail = _mode_verdict(config, mode, token)
        if verdict == "unavailable" and mode == "token" and "grant" in report:
            failure = _grant_verdict(report["grant"], now_ms)
            verdict, detail = ("rejected", failure) if failure else ("accepted (by grant)", None)
        elif verdict == "unavailable" and mode == "token":
            verdict, detail = "rejected", "Invalid token"
    if verdict is not None:
        report["verdict"] = verdict
        if isinstance(detail, Identity):
            report["identity"] = detail.to_wire()
        elif detail is not None:
            report["reason"] = detail
    if args.json:
        print(json.dumps(report, indent=2, default=str))
    else:
        _print_report(report, now_ms)
    return 1 if report.get("verdict") in ("rejected", "unavailable") else 0


def _print_report(report: Mapping[str, Any], now_ms: int) -> None:
    print(f"Token kind: {report['kind']}")
    print(f"tokenId:    {report['tokenId']}")
    print(f"digest:     {report['digest']}")
    if "jwt" in report:
        header = report["jwt"]["header"]
        claims = report["jwt"]["claims"]
        print(f"\nJWT header (not verified): {json.dumps(header)}")
        print("JWT claims (not verified):")
        print(json.dumps(claims, indent=2))
        for name in ("iat", "nbf", "exp"):
            value = claims.get(name)
            if isinstance(value, int | float) and not isinstance(value, bool):
                when = "in the past" if value * 1000 <= now_ms else "in the future"
                print(f"  {name}: {_iso_s(value)} ({when})")
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
                print(f"  {key}: {int(value)} ({_iso_ms(value)})")
    elif report["mode"] == "token":
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


# -- registration ----------------------------------------------------------------------------
def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    token = commands.add_parser(
        "token",
        help="issue and inspect auth tokens",
        description="Issue opaque tokens (with their config grant) or JWTs, and inspect what a "
        "token grants under the configured auth mode.",
    )
    sub = token.add_subparsers(dest="token_command", metavar="SUBCOMMAND")

    issue = sub.add_parser(
        "issue",
        help="print a new token and its grant (or a signed JWT with --jwt)",
        description="Print a new opaque token and the grant to add to .smithers/tokens.toml or "
        "[auth] tokens, keyed by the token's sha256 digest; with --jwt, a signed JWT whose "
        "issuer, audience, secret and claim names default to the config's [auth] (mode jwt).",
    )
    issue.add_argument("--role", default="operator", help="role (default: operator)")
    issue.add_argument(
        "--scopes",
        action="append",
        required=True,
        metavar="S",
        help='scopes, comma or space separated (e.g. "run:read,run:write" or "*"); repeatable',
    )
    issue.add_argument("--user", metavar="U", help="user id (userId / the JWT user claim)")
    issue.add_argument(
        "--ttl",
        metavar="DURATION",
        help="lifetime: 3600, 45s, 30m, 1h, 7d, 2w or never (default: never; 1h with --jwt)",
    )
    issue.add_argument(
        "--tokens-file",
        metavar="PATH",
        help="also append the grant to this TOML file (created with mode 0600)",
    )
    issue.add_argument("--json", action="store_true", help="machine-readable output")
    issue.add_argument("--jwt", action="store_true", help="issue a signed JWT instead")
    issue.add_argument("--issuer", metavar="I", help="JWT iss (default: [auth] issuer)")
    issue.add_argument(
        "--audience",
        action="append",
        metavar="A",
        help="JWT aud, repeatable (default: [auth] audience)",
    )
    secret = issue.add_mutually_exclusive_group()
    secret.add_argument("--secret-file", metavar="F", help="file holding the HMAC secret")
    secret.add_argument("--secret-env", metavar="VAR", help="environment variable holding it")
    issue.add_argument(
        "--algorithm",
        choices=sorted(_HMAC_MIN_BYTES),
        help="HMAC algorithm (default: the first HS one of [auth] algorithms, else HS256)",
    )
    issue.add_argument(
        "--allow-weak-secret", action="store_true", help="sign with a secret below the minimum"
    )
    issue.add_argument(
        "--config",
        metavar="PATH",
        help="config file for JWT defaults (default: $SMITHERS_CONFIG, else ./smithers.toml)",
    )
    issue.set_defaults(handler=_issue)

    inspect = sub.add_parser(
        "inspect",
        help="explain what a token grants under the configured auth mode",
        description="Decode a JWT's claims or find an opaque token's grant, and say whether the "
        "configured auth mode accepts the token. No secret is printed. Exit 0 when accepted "
        "(or when auth is off), 1 when rejected. Pass - to read the token from stdin.",
    )
    inspect.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    inspect.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $SMITHERS_CONFIG, else ./smithers.toml if present)",
    )
    inspect.add_argument("--json", action="store_true", help="machine-readable output")
    inspect.set_defaults(handler=_inspect)

    token.set_defaults(handler=lambda _a: _usage(token))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


__all__ = [
    "decode_jwt_unverified",
    "find_grant",
    "parse_ttl",
    "register",
    "split_scopes",
    "token_digest",
    "token_id",
]
