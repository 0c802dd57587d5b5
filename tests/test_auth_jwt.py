"""Auth mode ``jwt`` (plugin ``smithers_auth_jwt``): the verification matrix of issue 7.

Every test freezes the clock by handing the provider a ``now`` function; tokens are built with
PyJWT or, for hostile shapes, by hand.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from smithers_auth_jwt.provider import (
    MSG_ALGORITHM,
    MSG_AUDIENCE,
    MSG_EXP,
    MSG_EXPIRED,
    MSG_ISSUER,
    MSG_JSON,
    MSG_NOT_ACTIVE,
    MSG_SEGMENTS,
    MSG_SIGNATURE,
    MSG_TOKEN_REQUIRED,
    MSG_UNKNOWN_KID,
)
from stevedore.extension import ExtensionManager

from smithers_auth_jwt import JwtConfig, JwtMode, JwtProvider
from smithers_core.auth import AuthRequest, Identity
from smithers_core.config import PluginsSection, load_config
from smithers_core.errors import SmithersError
from smithers_core.plugins import PLUGIN_GROUP, load_plugins

pytestmark = pytest.mark.anyio

REPO_ROOT = Path(__file__).resolve().parent.parent
NOW = 1_800_000_000
SECRET = "s" * 16 + "-a-32-byte-secret"  # 33 bytes
ISS = "https://issuer.example"
AUD = "smithers"

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
RSA_KEY_2 = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
EC_KEY_2 = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


def pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def jwk(private_key: Any, kid: str | None = None, **extra: Any) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        data = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        data = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        data = OKPAlgorithm.to_jwk(public, as_dict=True)
    if kid is not None:
        data["kid"] = kid
    data.update(extra)
    return dict(data)


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"iss": ISS, "aud": AUD, "exp": NOW + 300, "sub": "alice"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    payload: dict[str, Any],
    key: Any = SECRET,
    alg: str = "HS256",
    headers: dict[str, Any] | None = None,
) -> str:
    return jwt.encode(payload, key, algorithm=alg, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def raw_token(header: Any, payload: Any, signature: str = "c2ln") -> str:
    h = b64(json.dumps(header).encode())
    p = b64(json.dumps(payload).encode())
    return f"{h}.{p}.{signature}"


def hs256_with_key(
    payload: dict[str, Any], key: bytes, header: dict[str, Any] | None = None
) -> str:
    """An HS256 token whose HMAC key is arbitrary bytes (what an attacker would do)."""
    h = b64(json.dumps(header or {"alg": "HS256", "typ": "JWT"}).encode())
    p = b64(json.dumps(payload).encode())
    mac = hmac.new(key, f"{h}.{p}".encode(), hashlib.sha256).digest()
    return f"{h}.{p}.{b64(mac)}"


def provider(now: float = NOW, **config: Any) -> JwtProvider:
    data: dict[str, Any] = {"issuer": ISS, "audience": AUD, "secret": SECRET}
    data.update(config)
    data = {k: v for k, v in data.items() if v is not None}
    return JwtProvider(JwtConfig.model_validate(data), now=lambda: now)


def rejects(p: JwtProvider, token: str | None, message: str) -> SmithersError:
    with pytest.raises(SmithersError) as err:
        p.verify(token)
    assert err.value.code == "UNAUTHORIZED"
    assert err.value.message == message
    return err.value


def token_id(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


# -- the happy path ----------------------------------------------------------------------------
async def test_valid_token_through_the_auth_hook_interface() -> None:
    token = sign(claims(role="admin", scope="run:read run:write"))
    ident = await provider().authenticate(AuthRequest(transport="http", token=token))
    assert ident == Identity(
        role="admin", scopes=("run:read", "run:write"), user_id="alice", token_id=token_id(token)
    )


async def test_no_token_is_required_message() -> None:
    p = provider()
    for token in (None, ""):
        with pytest.raises(SmithersError) as err:
            await p.authenticate(AuthRequest(transport="ws", token=token))
        assert (err.value.code, err.value.message) == ("UNAUTHORIZED", MSG_TOKEN_REQUIRED)


# -- time ---------------------------------------------------------------------------------------
def test_expired_token_carries_the_refresh_detail() -> None:
    err = rejects(provider(), sign(claims(exp=NOW - 3600)), MSG_EXPIRED)
    assert err.details == {"refresh": "smithers token issue"}


def test_not_yet_valid() -> None:
    rejects(provider(), sign(claims(nbf=NOW + 3600)), MSG_NOT_ACTIVE)


@pytest.mark.parametrize("exp", [None, "soon", True, [NOW + 10], {"t": 1}])
def test_exp_missing_or_not_a_number(exp: Any) -> None:
    payload = claims()
    if exp is None:
        del payload["exp"]
    else:
        payload["exp"] = exp
    rejects(provider(), sign(payload), MSG_EXP)


def test_non_numeric_nbf_is_rejected() -> None:
    rejects(provider(), sign(claims(nbf="yesterday")), MSG_NOT_ACTIVE)


def test_exp_boundary_with_default_skew() -> None:
    p = provider()  # clock_skew_seconds = 60: expired when now - 60 >= exp
    rejects(p, sign(claims(exp=NOW - 60)), MSG_EXPIRED)
    assert p.verify(sign(claims(exp=NOW - 59))).user_id == "alice"


def test_nbf_boundary_with_default_skew() -> None:
    p = provider()  # not active when now + 60 < nbf
    assert p.verify(sign(claims(nbf=NOW + 60))).user_id == "alice"
    rejects(p, sign(claims(nbf=NOW + 61)), MSG_NOT_ACTIVE)


def test_boundaries_without_skew_and_negative_skew_clamps_to_zero() -> None:
    for skew in (0, -30):
        p = provider(clock_skew_seconds=skew)
        rejects(p, sign(claims(exp=NOW)), MSG_EXPIRED)
        assert p.verify(sign(claims(exp=NOW + 1))).user_id == "alice"
        assert p.verify(sign(claims(nbf=NOW))).user_id == "alice"
        rejects(p, sign(claims(nbf=NOW + 1)), MSG_NOT_ACTIVE)


def test_now_is_whole_seconds() -> None:
    p = provider(now=NOW + 0.999, clock_skew_seconds=0)
    assert p.verify(sign(claims(exp=NOW + 1))).user_id == "alice"  # floor(now) = NOW


# -- issuer and audience -------------------------------------------------------------------------
def test_wrong_or_missing_issuer() -> None:
    rejects(provider(), sign(claims(iss="https://evil.example")), MSG_ISSUER)
    rejects(provider(), sign(claims(iss=None)), MSG_ISSUER)


def test_wrong_or_missing_audience() -> None:
    rejects(provider(), sign(claims(aud="someone-else")), MSG_AUDIENCE)
    rejects(provider(), sign(claims(aud=None)), MSG_AUDIENCE)
    rejects(provider(), sign(claims(aud=[1, 2])), MSG_AUDIENCE)


def test_audience_lists_intersect() -> None:
    assert provider().verify(sign(claims(aud=["x", AUD]))).user_id == "alice"
    p = provider(audience=["a", "b"])
    assert p.verify(sign(claims(aud="b"))).user_id == "alice"
    assert p.verify(sign(claims(aud=["z", "a"]))).user_id == "alice"
    rejects(p, sign(claims(aud=["z", AUD])), MSG_AUDIENCE)


def test_checks_run_in_upstream_order() -> None:
    # Bad issuer and bad audience and expired: the issuer is reported first ...
    rejects(provider(), sign(claims(iss="x", aud="y", exp=1)), MSG_ISSUER)
    rejects(provider(), sign(claims(aud="y", exp=1)), MSG_AUDIENCE)
    # ... and the signature before any claim.
    rejects(
        provider(), sign(claims(iss="x"), key="another-secret-of-32-bytes-or-more"), MSG_SIGNATURE
    )


# -- signature and algorithms --------------------------------------------------------------------
def test_bad_signature() -> None:
    rejects(provider(), sign(claims(), key="a-different-secret-of-32-bytes-xx"), MSG_SIGNATURE)
    good = sign(claims())
    h, _, s = good.split(".")
    forged = b64(json.dumps(claims(role="admin")).encode())
    rejects(provider(), f"{h}.{forged}.{s}", MSG_SIGNATURE)


def test_non_canonical_signature_segment() -> None:
    good = sign(claims())
    rejects(provider(), good + "=", MSG_SIGNATURE)  # padding is not base64url
    rejects(provider(), good[:-1] + "+", MSG_SIGNATURE)  # not in the alphabet
    h, p, s = good.split(".")
    # 43 characters of a 32-byte MAC: the last one carries 2 unused bits; flip them.
    last = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".index(s[-1])
    tweaked = s[:-1] + "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"[last ^ 1]
    rejects(provider(), f"{h}.{p}.{tweaked}", MSG_SIGNATURE)


def test_alg_none_is_never_accepted() -> None:
    payload = claims()
    rejects(provider(), raw_token({"alg": "none"}, payload, ""), MSG_SEGMENTS)
    rejects(provider(), raw_token({"alg": "none"}, payload, "AAAA"), MSG_ALGORITHM)
    rejects(provider(), raw_token({"alg": "None"}, payload), MSG_ALGORITHM)
    rejects(provider(), raw_token({"typ": "JWT"}, payload), MSG_ALGORITHM)
    with pytest.raises(ValueError, match="none"):
        JwtConfig.model_validate(
            {"issuer": ISS, "audience": AUD, "secret": SECRET, "algorithms": ["none"]}
        )


def test_algorithm_not_in_the_configured_list() -> None:
    rejects(provider(), sign(claims(), alg="HS512", key=SECRET * 2), MSG_ALGORITHM)
    rejects(provider(), sign(claims(), key=RSA_KEY, alg="RS256"), MSG_ALGORITHM)


def test_hs256_signed_with_the_rs256_public_key_pem_is_rejected() -> None:
    public_pem = pem(RSA_KEY)
    attack = hs256_with_key(claims(role="admin"), public_pem.encode())
    # RS256-only configuration: HS256 is simply not an accepted algorithm.
    rs_only = provider(secret=None, algorithms=["RS256"], public_key=public_pem)
    assert rs_only.verify(sign(claims(), key=RSA_KEY, alg="RS256")).user_id == "alice"
    rejects(rs_only, attack, MSG_ALGORITHM)
    # Both families allowed: HS256 uses only the HMAC secret, never the public key.
    both = provider(algorithms=["RS256", "HS256"], public_key=public_pem)
    rejects(both, attack, MSG_SIGNATURE)
    assert both.verify(sign(claims())).user_id == "alice"
    # And the PEM can never be configured as the HMAC secret.
    with pytest.raises(SmithersError, match="looks like a public key"):
        provider(secret=public_pem)


def test_a_jwk_is_never_used_as_an_hmac_secret() -> None:
    public_jwk = jwk(RSA_KEY, kid="k1")
    jwk_text = json.dumps(public_jwk)
    # As the configured secret: refused at start.
    with pytest.raises(SmithersError, match="looks like a public key or a JWK") as err:
        provider(secret=jwk_text)
    assert err.value.code == "CONFIG_INVALID"
    # A symmetric JWK in the key set: refused at start.
    oct_jwk = {"kty": "oct", "kid": "h", "k": b64(b"x" * 32)}
    with pytest.raises(SmithersError, match="never used as an HMAC secret"):
        provider(secret=None, algorithms=["RS256"], jwks={"keys": [oct_jwk]})
    # An HS256 token keyed with the JWK document (or its text) against a JWKS configuration.
    attack = hs256_with_key(claims(role="admin"), jwk_text.encode(), {"alg": "HS256", "kid": "k1"})
    jwks_only = provider(secret=None, algorithms=["RS256"], jwks={"keys": [public_jwk]})
    rejects(jwks_only, attack, MSG_ALGORITHM)
    mixed = provider(algorithms=["RS256", "HS256"], jwks={"keys": [public_jwk]})
    rejects(mixed, attack, MSG_SIGNATURE)


# -- asymmetric keys -----------------------------------------------------------------------------
def test_rs256_and_ps256_from_a_pem_key() -> None:
    p = provider(secret=None, algorithms=["RS256", "PS256"], public_key=pem(RSA_KEY))
    assert p.verify(sign(claims(), key=RSA_KEY, alg="RS256")).user_id == "alice"
    assert p.verify(sign(claims(), key=RSA_KEY, alg="PS256")).user_id == "alice"
    rejects(p, sign(claims(), key=RSA_KEY_2, alg="RS256"), MSG_SIGNATURE)


def test_es256_key() -> None:
    p = provider(secret=None, algorithms=["ES256"], public_key=pem(EC_KEY))
    assert p.verify(sign(claims(), key=EC_KEY, alg="ES256")).user_id == "alice"
    rejects(p, sign(claims(), key=EC_KEY_2, alg="ES256"), MSG_SIGNATURE)


def test_eddsa_key_from_pem_and_jwks() -> None:
    by_pem = provider(secret=None, algorithms=["EdDSA"], public_key=pem(ED_KEY))
    token = sign(claims(), key=ED_KEY, alg="EdDSA")
    assert by_pem.verify(token).user_id == "alice"
    by_jwks = provider(secret=None, algorithms=["EdDSA"], jwks=json.dumps({"keys": [jwk(ED_KEY)]}))
    assert by_jwks.verify(token).user_id == "alice"
    rejects(
        by_jwks,
        sign(claims(), key=ed25519.Ed25519PrivateKey.generate(), alg="EdDSA"),
        MSG_SIGNATURE,
    )


def test_key_type_must_fit_the_algorithm() -> None:
    # An ES256 token against a configuration whose only key is RSA.
    p = provider(secret=None, algorithms=["RS256", "ES256"], public_key=pem(RSA_KEY))
    rejects(p, sign(claims(), key=EC_KEY, alg="ES256"), MSG_ALGORITHM)
    # A PEM key that fits none of the algorithms is refused at start.
    with pytest.raises(SmithersError, match="fits none of the configured algorithms"):
        provider(secret=None, algorithms=["RS256"], public_key=pem(EC_KEY))


def test_jwks_with_two_keys_selects_by_kid() -> None:
    keys = {"keys": [jwk(RSA_KEY, kid="a"), jwk(EC_KEY, kid="b", alg="ES256")]}
    p = provider(secret=None, algorithms=["RS256", "ES256"], jwks=keys)
    t_a = sign(claims(sub="user-a"), key=RSA_KEY, alg="RS256", headers={"kid": "a"})
    t_b = sign(claims(sub="user-b"), key=EC_KEY, alg="ES256", headers={"kid": "b"})
    assert p.verify(t_a).user_id == "user-a"
    assert p.verify(t_b).user_id == "user-b"
    # Key b is EC: an RS256 token naming kid b has no fitting key under that id.
    wrong = sign(claims(), key=RSA_KEY, alg="RS256", headers={"kid": "b"})
    rejects(p, wrong, MSG_UNKNOWN_KID)


def test_jwks_two_keys_same_type_and_wrong_key_for_kid() -> None:
    keys = {"keys": [jwk(RSA_KEY, kid="a"), jwk(RSA_KEY_2, kid="b")]}
    p = provider(secret=None, algorithms=["RS256"], jwks=keys)
    assert p.verify(sign(claims(), key=RSA_KEY_2, alg="RS256", headers={"kid": "b"}))
    rejects(p, sign(claims(), key=RSA_KEY, alg="RS256", headers={"kid": "b"}), MSG_SIGNATURE)


def test_unknown_kid() -> None:
    keys = {"keys": [jwk(RSA_KEY, kid="a"), jwk(RSA_KEY_2, kid="b")]}
    p = provider(secret=None, algorithms=["RS256"], jwks=keys)
    rejects(p, sign(claims(), key=RSA_KEY, alg="RS256", headers={"kid": "c"}), MSG_UNKNOWN_KID)


def test_jwks_configuration_errors() -> None:
    base: dict[str, Any] = {"secret": None, "algorithms": ["RS256"]}
    for jwks, match in [
        ("not json", "not valid JSON"),
        ({"keys": "x"}, "must be an object"),
        ({"keys": [jwk(RSA_KEY, kid="a"), jwk(RSA_KEY_2, kid="a")]}, "two keys with kid"),
        ({"keys": [{"kty": "RSA", "kid": "z"}]}, "could not be loaded"),
    ]:
        with pytest.raises(SmithersError, match=match):
            provider(jwks=jwks, **base)
    with pytest.raises(SmithersError, match="need a public key"):
        provider(**base)


# -- malformed tokens ----------------------------------------------------------------------------
@pytest.mark.parametrize("token", ["abc", "a.b", "a.b.c.d", "a..c", ".b.c", "a.b."])
def test_malformed_segments(token: str) -> None:
    rejects(provider(), token, MSG_SEGMENTS)


def test_header_or_payload_not_json_objects() -> None:
    good = raw_token({"alg": "HS256"}, claims())
    h, p, s = good.split(".")
    rejects(provider(), f"{b64(b'not json')}.{p}.{s}", MSG_JSON)
    rejects(provider(), f"{h}.{b64(b'[1, 2]')}.{s}", MSG_JSON)
    string = b64(b'"str"')
    rejects(provider(), f"{h}.{string}.{s}", MSG_JSON)
    rejects(provider(), f"{h}.a.{s}", MSG_JSON)  # one base64 char cannot decode


# -- claims to identity --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("claim", "expected"),
    [
        (["run:read", "run:write"], ("run:read", "run:write")),
        (["run:read", 7, None, "approval:submit"], ("run:read", "approval:submit")),
        ("run:read run:write", ("run:read", "run:write")),
        ("run:read,run:write", ("run:read", "run:write")),
        (" run:read ,\trun:write  cron:read ", ("run:read", "run:write", "cron:read")),
        ("", ("fallback",)),
        ([], ("fallback",)),
        (42, ("fallback",)),
        (None, ("fallback",)),
    ],
)
def test_scopes_claim_shapes(claim: Any, expected: tuple[str, ...]) -> None:
    p = provider(default_scopes=["fallback"])
    assert p.verify(sign(claims(scope=claim))).scopes == expected


def test_default_scopes_default_to_empty() -> None:
    assert provider().verify(sign(claims())).scopes == ()


def test_custom_claim_names_and_role_defaults() -> None:
    p = provider(scopes_claim="perms", role_claim="kind", user_claim="email", default_role="viewer")
    token = sign(claims(perms=["run:read"], kind="admin", email="a@example.com"))
    assert p.verify(token) == Identity("admin", ("run:read",), "a@example.com", token_id(token))
    plain = sign(claims(kind=3, email=["x"]))
    ident = p.verify(plain)
    assert (ident.role, ident.user_id, ident.token_id) == ("viewer", None, token_id(plain))
    assert provider().verify(sign(claims(sub=None))).role == "operator"
    assert provider(default_role=None).verify(sign(claims())).role == "operator"


def test_camel_case_keys_are_accepted() -> None:
    config = JwtConfig.model_validate(
        {
            "issuer": ISS,
            "audience": [AUD],
            "secret": SECRET,
            "scopesClaim": "perms",
            "roleClaim": "kind",
            "userClaim": "email",
            "defaultRole": "viewer",
            "defaultScopes": ["run:read"],
            "clockSkewSeconds": -5,
            "allowedOrigins": ["https://ui.example"],
            "tokens_file": "left over from token mode: ignored",
        }
    )
    assert config.scopes_claim == "perms" and config.clock_skew_seconds == 0
    assert config.default_scopes == ["run:read"] and config.allowed_origins == [
        "https://ui.example"
    ]
    ident = JwtProvider(config, now=lambda: NOW).verify(sign(claims(email="e")))
    assert (ident.role, ident.scopes, ident.user_id) == ("viewer", ("run:read",), "e")


# -- cache ---------------------------------------------------------------------------------------
def test_cache_returns_the_same_identity_without_reverifying(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [float(NOW)]
    p = JwtProvider(
        JwtConfig.model_validate({"issuer": ISS, "audience": AUD, "secret": SECRET}),
        now=lambda: clock[0],
    )
    token = sign(claims(exp=NOW + 100))
    first = p.verify(token)
    calls = []
    original = p._verify_uncached

    def counting(tok: str, now: int) -> Any:
        calls.append(tok)
        return original(tok, now)

    monkeypatch.setattr(p, "_verify_uncached", counting)
    assert p.verify(token) is first
    assert calls == []
    # After exp (+ skew) the cached entry is rejected with the expiry message and dropped.
    clock[0] = NOW + 100 + 60
    err = rejects(p, token, MSG_EXPIRED)
    assert err.details == {"refresh": "smithers token issue"}
    assert len(p._cache) == 0
    rejects(p, token, MSG_EXPIRED)
    assert calls == [token]  # the second refusal verified from scratch


def test_cache_is_bounded_lru() -> None:
    p = provider(cache_size=2)
    tokens = [sign(claims(sub=f"u{i}")) for i in range(3)]
    for t in tokens:
        p.verify(t)
    assert len(p._cache) == 2
    assert hashlib.sha256(tokens[0].encode()).digest() not in p._cache
    off = provider(cache_size=0)
    off.verify(tokens[0])
    assert len(off._cache) == 0


def test_failures_are_not_cached() -> None:
    p = provider()
    bad = sign(claims(), key="a-different-secret-of-32-bytes-xx")
    rejects(p, bad, MSG_SIGNATURE)
    assert len(p._cache) == 0


# -- start-up refusals ---------------------------------------------------------------------------
def test_short_or_empty_secret_is_refused_at_create() -> None:
    mode = JwtMode()
    short = JwtConfig.model_validate({"issuer": ISS, "audience": AUD, "secret": "x" * 31})
    with pytest.raises(SmithersError, match="31 bytes") as err:
        mode.create(short)
    assert err.value.code == "CONFIG_INVALID"
    assert "x" * 31 not in err.value.message  # the secret is never echoed
    weak_ok = short.model_copy(update={"allow_weak_secret": True})
    assert isinstance(mode.create(weak_ok), JwtProvider)
    empty = JwtConfig.model_validate(
        {"issuer": ISS, "audience": AUD, "secret": "", "allow_weak_secret": True}
    )
    with pytest.raises(SmithersError, match="empty"):
        mode.create(empty)
    missing = JwtConfig.model_validate({"issuer": ISS, "audience": AUD})
    with pytest.raises(SmithersError, match="need an HMAC secret"):
        mode.create(missing)
    hs512 = JwtConfig.model_validate(
        {"issuer": ISS, "audience": AUD, "secret": "y" * 40, "algorithms": ["HS512"]}
    )
    with pytest.raises(SmithersError, match="at least 64 bytes"):
        mode.create(hs512)


def test_other_configuration_errors() -> None:
    with pytest.raises(SmithersError, match="allow only HMAC"):
        provider(jwks={"keys": [jwk(RSA_KEY, kid="a")]})
    with pytest.raises(SmithersError, match="allows no HS algorithm"):
        provider(algorithms=["RS256"], public_key=pem(RSA_KEY))
    with pytest.raises(ValueError, match="unsupported algorithm"):
        JwtConfig.model_validate({"issuer": ISS, "audience": AUD, "algorithms": ["HS1"]})
    with pytest.raises(ValueError, match="audience"):
        JwtConfig.model_validate({"issuer": ISS, "audience": []})
    with pytest.raises(ValueError):
        JwtConfig.model_validate({"audience": AUD})


def test_secret_public_key_and_jwks_files_through_the_config_loader(tmp_path: Path) -> None:
    (tmp_path / "jwt.secret").write_text(SECRET + "\n")
    (tmp_path / "rsa.pem").write_text(pem(RSA_KEY))
    (tmp_path / "keys.json").write_text(json.dumps({"keys": [jwk(EC_KEY, kid="e1")]}))
    (tmp_path / "smithers.toml").write_text(
        "[auth]\n"
        'mode = "jwt"\n'
        f'issuer = "{ISS}"\n'
        f'audience = ["{AUD}"]\n'
        'secret_file = "jwt.secret"\n'
        'public_key_file = "rsa.pem"\n'
        'jwks_file = "keys.json"\n'
        'algorithms = ["HS256", "RS256", "ES256"]\n'
    )
    auth = load_config(tmp_path / "smithers.toml", environ={}).auth
    data = {k: v for k, v in auth.items() if k != "mode"}
    p = JwtMode(now=lambda: NOW).create(JwtConfig.model_validate(data))
    assert p.verify(sign(claims(sub="hs"))).user_id == "hs"
    assert p.verify(sign(claims(sub="rs"), key=RSA_KEY, alg="RS256")).user_id == "rs"
    es = sign(claims(sub="es"), key=EC_KEY, alg="ES256", headers={"kid": "e1"})
    assert p.verify(es).user_id == "es"


def test_missing_key_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(SmithersError, match=r"public_key_file .*nope\.pem does not exist"):
        provider(secret=None, algorithms=["RS256"], public_key_file=str(tmp_path / "nope.pem"))
    with pytest.raises(SmithersError, match=r"secret_file .*gone does not exist"):
        provider(secret=None, secret_file=str(tmp_path / "gone"))


def test_secret_from_environment_via_config_loader(tmp_path: Path) -> None:
    (tmp_path / "smithers.toml").write_text(
        f'[auth]\nmode = "jwt"\nissuer = "{ISS}"\naudience = "{AUD}"\nsecret_env = "JWT_SECRET"\n'
    )
    auth = load_config(tmp_path / "smithers.toml", environ={"JWT_SECRET": SECRET}).auth
    p = JwtMode(now=lambda: NOW).create(JwtConfig.model_validate(auth))
    assert p.verify(sign(claims())).user_id == "alice"


# -- discovery -----------------------------------------------------------------------------------
@pytest.fixture
def fresh_entry_point_cache() -> Iterator[None]:
    """stevedore caches each group's entry points in a class attribute for the whole process;
    drop it around discovery so this test neither sees nor leaves another test's view."""
    ExtensionManager.ENTRY_POINT_CACHE.pop(PLUGIN_GROUP, None)
    yield
    ExtensionManager.ENTRY_POINT_CACHE.pop(PLUGIN_GROUP, None)


@pytest.mark.usefixtures("fresh_entry_point_cache")
async def test_plugin_is_discovered_through_its_entry_point() -> None:
    host = load_plugins(PluginsSection(enable=["smithers_auth_jwt"]), environ={})
    info = host.infos["smithers_auth_jwt"]
    assert info.loaded and info.distribution == "smithers-auth-jwt"
    assert info.hooks == ["smithers_auth_modes"]
    mode = host.auth_modes()["jwt"]
    config = mode.config_model.model_validate({"issuer": ISS, "audience": AUD, "secret": SECRET})
    created = mode.create(config)
    token = sign(claims(exp=2**40))
    ident = await created.authenticate(AuthRequest(transport="http", token=token))
    assert ident.user_id == "alice"


def test_installed_package_is_not_shadowed_by_the_source_folder() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "import smithers_auth_jwt; print(smithers_auth_jwt.__file__)"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(out).parts[-3:] == ("src", "smithers_auth_jwt", "__init__.py")
