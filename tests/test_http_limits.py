"""Protocol-level header/request timeouts (D9) and body parsing of smithers_core.http."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import anyio
import pytest

from smithers_core.http.body import json_depth_exceeds, parse_json
from smithers_core.http.errors import HttpError
from smithers_core.http.params import js_number, optional_int, positive_int
from tests.fixtures.server.helpers import server

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


def trickle(port: int, pieces: list[bytes], gap: float, limit: float = 5.0) -> tuple[bytes, float]:
    """Send ``pieces`` ``gap`` seconds apart; return what came back and when it closed."""
    began = time.monotonic()
    out = b""
    with socket.create_connection(("127.0.0.1", port), timeout=limit) as sock:
        sock.settimeout(gap)
        for piece in pieces:
            try:
                sock.sendall(piece)
            except OSError:
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            out += chunk
            if not chunk or out:
                break
        sock.settimeout(limit)
        while True:
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, OSError):
                break
            if not chunk:
                break
            out += chunk
    return out, time.monotonic() - began


async def test_slow_headers_are_cut_off_with_408(tmp_path: Path) -> None:
    async with server(tmp_path, headers_timeout=300, request_timeout=5000) as s:
        pieces = [b"GET /v1/runs HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 40
        out, elapsed = await anyio.to_thread.run_sync(trickle, s.running.port, pieces, 0.05)
        assert out.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
        assert b'{"error":{"code":"REQUEST_TIMEOUT"' in out
        assert 0.25 <= elapsed < 1.5


async def test_idle_connection_without_bytes_is_closed(tmp_path: Path) -> None:
    async with server(tmp_path, headers_timeout=200, request_timeout=5000) as s:
        out, elapsed = await anyio.to_thread.run_sync(trickle, s.running.port, [], 0.05)
        assert out.startswith(b"HTTP/1.1 408 ")
        assert elapsed < 1.5


async def test_slow_body_is_cut_off_by_the_request_timeout(tmp_path: Path) -> None:
    async with server(tmp_path, headers_timeout=5000, request_timeout=400) as s:
        head = b"POST /v1/runs HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n"
        pieces = [head] + [b"x"] * 60
        out, elapsed = await anyio.to_thread.run_sync(trickle, s.running.port, pieces, 0.05)
        assert out.startswith(b"HTTP/1.1 408 ")
        assert 0.35 <= elapsed < 2


async def test_prompt_requests_and_keep_alive_are_unaffected(tmp_path: Path) -> None:
    async with server(tmp_path, headers_timeout=300, request_timeout=300) as s:
        for _ in range(3):  # the same keep-alive connection, well past both limits in total
            r = await s.client.get("/health")
            assert r.status_code == 200
            await anyio.sleep(0.15)


async def test_sse_responses_outlive_the_request_timeout(tmp_path: Path) -> None:
    async with server(tmp_path, headers_timeout=200, request_timeout=200, sse_keepalive_ms=50) as s:
        run_id = await s.start("slow")
        began = time.monotonic()
        buf = ""
        with anyio.fail_after(5):
            async with s.client.stream("GET", f"/v1/runs/{run_id}/events") as r:
                async for chunk in r.aiter_text():
                    buf += chunk
                    if time.monotonic() - began > 0.6:
                        break
        assert "RunStarted" in buf and time.monotonic() - began > 0.6
        assert buf.count(": keep-alive") >= 5  # the stream kept going past both limits


def test_json_parsing_rules() -> None:
    assert parse_json(b"") == {}
    assert parse_json(b"  ") == {}
    assert parse_json(b"[1]") == [1]
    for bad in (b"{", b"\xff", b"NaN", b'{"a": Infinity}'):
        with pytest.raises(HttpError) as info:
            parse_json(bad)
        assert info.value.code == "INVALID_JSON" and info.value.status == 400
    assert not json_depth_exceeds([[]], 2)
    assert json_depth_exceeds([[]], 1)
    assert not json_depth_exceeds({"a": 1}, 2)
    assert json_depth_exceeds({"a": 1}, 1)


def test_query_number_parsing() -> None:
    assert js_number("1e3") == 1000 and js_number(" 5 ") == 5 and js_number("0x10") == 16
    assert js_number("") == 0
    assert positive_int("1.5", 50) == 1 and positive_int("0.5", 50) == 0
    assert positive_int(None, 50) == 50
    for bad in ("0", "-1", "abc", "Infinity", "1_0", "inf", "nan"):
        with pytest.raises(HttpError):
            positive_int(bad, 50)
    assert optional_int("-3.5", 0) == -4
    with pytest.raises(HttpError):
        optional_int("abc", 0)


async def test_timeouts_come_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SMITHERS_HEADERS_TIMEOUT_MS", "200")
    async with server(tmp_path) as s:
        pieces = [b"GET /health HTTP/1.1\r\n"] + [b"X-Slow: 1\r\n"] * 40
        out, elapsed = await anyio.to_thread.run_sync(trickle, s.running.port, pieces, 0.05)
        assert out.startswith(b"HTTP/1.1 408 ") and elapsed < 1.5
