"""The agent web service in the running server, over real HTTPS and WebSocket (aiohttp's
client as the agent): logins, lockout, roles, the WebSocket session and its errors."""

from __future__ import annotations

import asyncio
import json
import ssl
from typing import Any

import aiohttp
import pytest

from acd.store.passwords import hash_password
from tests.harness import RunningServer

pytestmark = pytest.mark.interop

ACD = f"""
[acd]
reconcile_after_s = 0

[queues.support]
ring_timeout_s = 15

[agents.alice]
queues = {{support = 1}}
password_hash = "{hash_password('alice-pw')}"

[agents.bob]
queues = {{support = 1}}
password_hash = "{hash_password('bob-pw')}"
"""


@pytest.fixture
def web_server(server_factory) -> RunningServer:
    return server_factory(acd=ACD, web_extra="lockout_after = 2\nlockout_s = 60\nheartbeat_s = 2")


def tls_for(srv: RunningServer) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(srv.data_dir / "tls" / "selfsigned.crt"))
    return ctx  # the server's own self-signed certificate is the trust anchor: verified TLS


async def login(s: aiohttp.ClientSession, srv: RunningServer, agent: str, pw: str) -> tuple[int, dict[str, Any]]:
    async with s.post(f"{srv.web_url}/api/v1/login", json={"agent": agent, "password": pw}) as r:
        return r.status, await r.json()


def test_https_login_lockout_and_roles(web_server: RunningServer) -> None:
    srv = web_server

    async def run() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls_for(srv))) as s:
            status, body = await login(s, srv, "alice", "alice-pw")
            assert status == 200 and body["agent"] == "alice" and body["roles"] == ["agent"]
            token = body["token"]
            auth = {"Authorization": f"Bearer {token}"}
            async with s.get(f"{srv.web_url}/api/v1/me", headers=auth) as r:
                assert r.status == 200 and (await r.json())["agent"] == "alice"
                assert r.headers["Cache-Control"] == "no-store" and r.headers["X-Content-Type-Options"] == "nosniff"
            async with s.get(f"{srv.web_url}/api/v1/agents", headers=auth) as r:
                assert r.status == 403 and (await r.json())["error"]["code"] == "forbidden"
            async with s.get(f"{srv.web_url}/api/v1/me") as r:
                assert r.status == 401 and (await r.json())["error"]["code"] == "not-authenticated"
            async with s.post(f"{srv.web_url}/api/v1/login", data=b"{oops") as r:
                assert r.status == 400 and (await r.json())["error"]["code"] == "bad-request"
            assert (await login(s, srv, "bob", "nope"))[0] == 401
            status, body = await login(s, srv, "bob", "nope")
            assert status == 423 and body["error"]["code"] == "locked" and body["error"]["retry_after_s"] == 60
            assert (await login(s, srv, "bob", "bob-pw"))[0] == 423  # locked even with the right one
            async with s.post(f"{srv.web_url}/api/v1/logout", headers=auth) as r:
                assert r.status == 200
            async with s.get(f"{srv.web_url}/api/v1/me", headers=auth) as r:
                assert r.status == 401

    asyncio.run(run())
    assert "agent bob locked out" in srv.log_text()


def test_websocket_session_state_and_errors(web_server: RunningServer) -> None:
    srv = web_server

    async def run() -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=tls_for(srv))) as s:
            _, a = await login(s, srv, "alice", "alice-pw")
            ws = await s.ws_connect(f"{srv.web_url.replace('https', 'wss')}/api/v1/ws")
            await ws.send_str(json.dumps({"type": "login", "id": 1}))
            msg = json.loads((await ws.receive()).data)
            assert msg["code"] == "not-authenticated"
            closing = await ws.receive()
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4001

            ws = await s.ws_connect(f"{srv.web_url.replace('https', 'wss')}/api/v1/ws")
            await ws.send_str(json.dumps({"type": "hello", "id": 1, "version": 1, "token": a["token"]}))
            welcome = json.loads((await ws.receive()).data)
            assert welcome["re"] == 1 and welcome["agent"]["id"] == "alice" and welcome["ice_servers"] == []
            await ws.send_str("{garbage")
            assert json.loads((await ws.receive()).data)["code"] == "bad-json"
            await ws.send_str(json.dumps({"type": "login", "id": 2}))
            replies = [json.loads((await ws.receive()).data) for _ in range(2)]
            assert {"state", "result"} == {m["type"] for m in replies}
            assert all(m["state"]["state"] == "available" if m["type"] == "result" else m["state"] == "available"
                       for m in replies)
            await ws.send_str(json.dumps({"type": "answer", "id": 3, "call": "nope"}))
            assert json.loads((await ws.receive()).data)["code"] == "invalid-state"
            # silent for 3 heartbeats (2 s each): the server closes with 4009 and the agent is "lost"
            msg = await asyncio.wait_for(ws.receive(), timeout=10)
            assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 4009)

    asyncio.run(run())
    log = srv.wait_log(r"agent alice: connection lost")
    assert "agent protocol error from alice: bad-json" in log
