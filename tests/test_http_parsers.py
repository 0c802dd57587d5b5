"""The HTTP parser choice (httptools by default, h11 selectable) with the D9 timeouts on both,
and the serving loop (uvloop when installed)."""

from __future__ import annotations

import asyncio
import socket
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from smithers_core.errors import SmithersError
from smithers_core.http import loop as serving_loop
from smithers_core.http.timeouts import http_impl
from tests.fixtures.server.helpers import server
from tests.gateway_helpers import OP_TOKEN, TOKENS, make_gateway, ws_client
from tests.test_http_limits import trickle

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]

IMPLS = ["httptools", "h11"]


async def _read_all(port: int, head: bytes) -> bytes:
    stream = await anyio.connect_tcp("127.0.0.1", port)
    data = b""
    async with stream:
        await stream.send(head)
        with anyio.fail_after(5):
            try:
                while True:
                    data += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                pass
    return data


def test_the_default_parser_is_httptools_and_the_environment_picks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SMITHERS_HTTP", raising=False)
    assert http_impl() == "httptools"
    monkeypatch.setenv("SMITHERS_HTTP", "h11")
    assert http_impl() == "h11"
    assert http_impl("httptools") == "httptools"  # an explicit option wins
    with pytest.raises(SmithersError) as err:
        http_impl("hyper")
    assert err.value.code == "INVALID_INPUT"


@pytest.mark.parametrize("impl", IMPLS)
async def test_gateway_headers_and_body_timeouts_answer_408(tmp_path: Path, impl: str) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, headers_timeout=200, request_timeout=400, http=impl)
    bound = await gw.listen(port=0)
    try:
        assert impl in bound.server.config.http_protocol_class.__name__.lower()
        port = bound.port or 0
        began = time.monotonic()
        data = await _read_all(port, b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert data.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b'"REQUEST_TIMEOUT"' in data and 0.15 <= time.monotonic() - began < 2
        head = (
            b"POST /rpc HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 50\r\n"
            b"Authorization: Bearer " + OP_TOKEN.encode() + b"\r\n\r\n{"
        )
        began = time.monotonic()
        data = await _read_all(port, head)  # headers complete, body never is
        assert data.startswith(b"HTTP/1.1 408 ")
        assert 0.35 <= time.monotonic() - began < 2
    finally:
        await gw.close()


@pytest.mark.parametrize("impl", IMPLS)
async def test_gateway_websocket_outlives_both_timeouts(tmp_path: Path, impl: str) -> None:
    gw = make_gateway(tmp_path, tokens=TOKENS, headers_timeout=150, request_timeout=200, http=impl)
    await gw.listen(port=0)
    try:
        async with ws_client(gw) as ws:
            await ws.connect(OP_TOKEN)
            await anyio.sleep(0.5)  # well past both limits: time passing is what is tested
            reply = await ws.request("health", {})
            assert reply["ok"] is True
    finally:
        await gw.close()


@pytest.mark.parametrize("impl", IMPLS)
async def test_server_slow_headers_408_on_each_parser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, impl: str
) -> None:
    monkeypatch.setenv("SMITHERS_HTTP", impl)
    async with server(tmp_path, headers_timeout=300, request_timeout=5000) as s:
        pieces = [b"GET /v1/runs HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 40
        out, elapsed = await anyio.to_thread.run_sync(trickle, s.running.port, pieces, 0.05)
        assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert 0.25 <= elapsed < 1.5
        r = await s.client.get("/health")  # and prompt requests are served
        assert r.status_code == 200


def _loop_module(monkeypatch: pytest.MonkeyPatch, value: str | None) -> str:
    if value is None:
        monkeypatch.delenv("SMITHERS_LOOP", raising=False)
    else:
        monkeypatch.setenv("SMITHERS_LOOP", value)

    async def which() -> Any:
        return type(asyncio.get_running_loop()).__module__

    return str(serving_loop.run(which))


def test_serving_loop_is_uvloop_unless_asked_for_asyncio(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("uvloop")
    assert _loop_module(monkeypatch, None).startswith("uvloop")
    assert _loop_module(monkeypatch, "asyncio").startswith("asyncio")


def test_config_selects_h11_and_rejects_other_parsers(tmp_path: Path) -> None:
    from smithers_core.cli.gateway import build_gateway
    from smithers_core.config import SmithersConfig

    config = SmithersConfig(gateway={"http": "h11"}, base_dir=tmp_path)
    gateway, _listen = build_gateway(config)
    assert gateway.context.settings.http == "h11"
    with pytest.raises(SmithersError) as err:
        make_gateway(tmp_path, tokens=TOKENS, http="hyper")
    assert err.value.code == "INVALID_INPUT"


SLOW_HEADERS = b"GET /health HTTP/1.1\r\nHost: x\r\n"
SLOW_BODY = b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"


def _keep_alive_then_slow(port: int, second: bytes) -> tuple[bytes, float]:
    """A prompt request, 0.2 s idle, then ``second``, which never ends: the 408 time is
    measured from the second request's first byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ")
        head, _, body = first.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        for _ in range(10):  # the body may come in a second write
            if len(body) >= length:
                break
            body += sock.recv(65536)
        time.sleep(0.2)  # the first request's headers deadline passes during this
        began = time.monotonic()
        sock.sendall(second)
        out = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            out += chunk
        return out, time.monotonic() - began


@pytest.mark.parametrize("impl", IMPLS)
@pytest.mark.parametrize(
    ("second", "limits"), [(SLOW_HEADERS, (300, 5000)), (SLOW_BODY, (5000, 300))]
)
async def test_the_deadline_is_the_current_requests_on_a_kept_alive_connection(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    impl: str,
    second: bytes,
    limits: tuple[int, int],
) -> None:
    """The connection's one timer, armed for the first request, re-arms for the second's own
    deadline (headers, then body)."""
    monkeypatch.setenv("SMITHERS_HTTP", impl)
    async with server(tmp_path, headers_timeout=limits[0], request_timeout=limits[1]) as s:
        port = s.running.port
        out, elapsed = await anyio.to_thread.run_sync(_keep_alive_then_slow, port, second)
        assert out.startswith(b"HTTP/1.1 408 ")
        assert 0.28 <= elapsed < 1.5  # not the first request's deadline (0.1 s in)
