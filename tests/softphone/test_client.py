"""softphone/client.py: reconnect backoff, failover choice, certificate pinning and login errors.

The certificate and login tests run against the real server (tests/harness.py) and its real
self-signed certificate; the policy tests are plain unit tests."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from acd.store.passwords import hash_password
from acd.tlscert import fingerprint
from softphone.client import AgentConnection
from softphone.trust import Backoff, Failover, Trust, format_fingerprint, normalize_url, parse_fingerprint
from softphone.errors import (AccountLocked, BadCredentials, CertificateError, CertificateMismatch, ConfigError,
                              ServerUnreachable, SoftphoneError, UntrustedCertificate)
from tests.harness import ROOT, RunningServer, free_port

ACD = f"""
[acd]
connection_grace_s = 8

[queues.support]

[agents.alice]
queues = {{support = 5}}
password_hash = "{hash_password('alice-pw')}"

[agents.bob]
queues = {{support = 1}}
password_hash = "{hash_password('bob-pw')}"
"""


def cert(srv: RunningServer) -> Path:
    return srv.data_dir / "tls" / "selfsigned.crt"


# -- policies ---------------------------------------------------------------------------------


def test_backoff_grows_is_capped_and_jittered() -> None:
    b = Backoff(base_s=0.5, factor=2, cap_s=8, jitter=0.5, rng=random.Random(7))
    assert [b.ceiling(n) for n in range(7)] == [0.5, 1, 2, 4, 8, 8, 8]
    for n in range(12):
        delays = [b.delay(n) for _ in range(200)]
        top = b.ceiling(n)
        assert all(top * 0.5 <= d <= top for d in delays), (n, min(delays), max(delays))
        assert max(delays) - min(delays) > top * 0.3  # really jittered, over most of the allowed range
    assert b.delay(10_000) <= 8  # no overflow on a very long outage
    assert Backoff(jitter=0, base_s=1, cap_s=4).delay(1) == 2  # no jitter: exact
    with pytest.raises(ValueError):
        Backoff(base_s=0)
    with pytest.raises(ValueError):
        Backoff(cap_s=0.1, base_s=1)


def test_failover_after_n_failures_and_stays_where_it_works() -> None:
    f = Failover("https://a:1", "https://b:2", after=3)
    assert [f.failed() for _ in range(2)] == ["https://a:1"] * 2  # two failures: still the primary
    assert f.failed() == "https://b:2" and f.switches == 1  # the third: the secondary
    f.succeeded()
    f.failed()
    f.failed()
    assert f.current == "https://b:2"  # stays on the secondary after a success ...
    assert f.failed() == "https://a:1"  # ... until it fails N times in a row
    f.succeeded()
    assert f.failures == 0 and f.current == "https://a:1"
    only = Failover("https://a:1", None, after=1)
    assert [only.failed() for _ in range(5)] == ["https://a:1"] * 5
    assert Failover("https://a:1", "https://a:1").secondary is None
    with pytest.raises(ValueError):
        Failover("https://a:1", after=0)


def test_fingerprint_and_url_parsing() -> None:
    digest = bytes(range(32))
    text = format_fingerprint(digest)
    assert text.startswith("00:01:02") and len(text) == 95
    for form in (text, text.lower(), text.replace(":", ""), "sha256:" + text, f"  {text} "):
        assert parse_fingerprint(form) == digest
    for bad in ("", "AA:BB", text + ":00", "zz" * 32):
        with pytest.raises(ConfigError, match="fingerprint"):
            parse_fingerprint(bad)
    assert normalize_url("acd.example.com:8443/") == "https://acd.example.com:8443"
    assert normalize_url("http://127.0.0.1:80") == "http://127.0.0.1:80"
    with pytest.raises(ConfigError):
        normalize_url("ftp://x")
    assert issubclass(CertificateMismatch, UntrustedCertificate) and issubclass(UntrustedCertificate, SoftphoneError)


# -- against the real server -------------------------------------------------------------------


@pytest.fixture
def srv(server_factory) -> RunningServer:
    return server_factory(acd=ACD, web_extra="lockout_after = 2\nlockout_s = 60\nheartbeat_s = 2")


async def _connect(conn: AgentConnection) -> dict:
    try:
        return await conn.connect()
    finally:
        await conn.close()


@pytest.mark.interop
def test_pinned_fingerprint_connects_and_a_wrong_one_is_refused_with_the_real_one(srv: RunningServer) -> None:
    actual = fingerprint(cert(srv))
    welcome = asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "alice-pw", trust=Trust([actual]))))
    assert welcome["agent"]["id"] == "alice" and welcome["protocol"] == 1

    wrong = format_fingerprint(bytes(32))
    with pytest.raises(CertificateMismatch) as info:
        asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "alice-pw", trust=Trust([wrong]))))
    assert info.value.fingerprint == actual and info.value.pinned == [wrong]
    assert actual in info.value.message and info.value.exit_code == 4

    # no trust configured: system CAs only -> the prompt "Trust this server?" has what it needs
    with pytest.raises(UntrustedCertificate) as info2:
        asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "alice-pw")))
    err = info2.value
    assert type(err) is UntrustedCertificate and err.self_signed and err.fingerprint == actual
    assert f"--trust-fingerprint {actual}" in err.message and err.as_dict()["fingerprint"] == actual

    # or trust the certificate file itself as a CA
    welcome = asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "alice-pw",
                                                   trust=Trust(ca_files=[cert(srv)]))))
    assert welcome["state"]["state"] == "logged-out"


@pytest.mark.interop
def test_wrong_password_then_locked_account(srv: RunningServer) -> None:
    trust = Trust([fingerprint(cert(srv))])
    with pytest.raises(BadCredentials) as info:
        asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "nope", trust=trust)))
    assert info.value.message == "wrong agent name or password for 'alice'" and info.value.exit_code == 3
    with pytest.raises(AccountLocked) as locked:  # lockout_after = 2: the second failure locks
        asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "nope", trust=trust)))
    assert locked.value.retry_after_s == 60
    with pytest.raises(AccountLocked, match=r"locked after too many failed logins; try again in \d+ s"):
        asyncio.run(_connect(AgentConnection(srv.web_url, "alice", "alice-pw", trust=trust)))  # even the right one
    # another agent is not affected
    assert asyncio.run(_connect(AgentConnection(srv.web_url, "bob", "bob-pw", trust=trust)))["agent"]["id"] == "bob"


@pytest.mark.interop
def test_unreachable_primary_falls_over_to_the_secondary_at_once(srv: RunningServer) -> None:
    dead = f"https://127.0.0.1:{free_port()}"
    with pytest.raises(ServerUnreachable) as info:
        asyncio.run(_connect(AgentConnection(dead, "alice", "alice-pw")))
    assert dead in info.value.message and info.value.exit_code == 5

    async def run() -> tuple[str | None, dict]:
        conn = AgentConnection(dead, "alice", "alice-pw", secondary=srv.web_url,
                               trust=Trust([fingerprint(cert(srv))]))
        try:
            welcome = await conn.connect()
            return conn.server, welcome
        finally:
            await conn.close()

    server, welcome = asyncio.run(run())
    assert server == srv.web_url and welcome["agent"]["id"] == "alice"


@pytest.mark.interop
def test_refused_token_means_a_fresh_login_and_a_dropped_socket_a_resumed_session(srv: RunningServer) -> None:
    """logout over HTTPS revokes the token and closes the socket (4001): the connection logs in
    again by itself. A dropped socket comes back with hello on the same token."""
    async def run() -> list[dict]:
        conn = AgentConnection(srv.web_url, "alice", "alice-pw", trust=Trust([fingerprint(cert(srv))]),
                               backoff=Backoff(base_s=0.1, cap_s=0.5))
        seen: list[dict] = []
        conn.add_listener(lambda ev: seen.append(ev) if ev["type"] in ("connection", "state") else None)
        try:
            await conn.connect()
            assert (await conn.request("login"))["state"]["state"] == "available"
            first = conn.token
            await conn.drop()
            await asyncio.sleep(0.2)
            assert await conn.wait_connected(10)
            assert conn.token == first and conn.welcome["state"]["state"] == "available"  # kept within the grace
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{srv.web_url}/api/v1/logout", ssl=False,
                                     headers={"Authorization": f"Bearer {first}"}) as r:
                    assert r.status == 200
            for _ in range(100):
                await asyncio.sleep(0.1)
                if conn.connected and conn.token != first:
                    break
            assert conn.connected and conn.token and conn.token != first
            assert (await conn.request("ping")) == {}  # requests work on the new socket
            assert conn.reconnects == 2 and conn.failovers == 0
            with pytest.raises(SoftphoneError, match="unknown-type"):
                await conn.request("no-such-thing")
            return seen
        finally:
            await conn.close()

    seen = asyncio.run(run())
    states = [e["state"] for e in seen if e["type"] == "connection"]
    assert states[0] == "connected" and states.count("connected") == 3 and states.count("lost") == 2
    assert states[-1] == "closed"
    reconnected = [e for e in seen if e["type"] == "connection" and e["state"] == "connected"][1:]
    assert all(e["reconnect"] and not e["failover"] for e in reconnected)


def _cli(*args: str, tmp: Path) -> tuple[int, dict]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "XDG_STATE_HOME": str(tmp / "state"),
           "XDG_CONFIG_HOME": str(tmp / "cfg")}
    out = subprocess.run([sys.executable, "-m", "softphone.cli", *args, "--json"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=40)
    return out.returncode, json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.interop
def test_command_line_exit_codes_and_errors(srv: RunningServer, tmp_path: Path) -> None:
    pw = tmp_path / "pw"
    pw.write_text("wrong\n")
    pw.chmod(0o600)
    common = ("--headless", "--auto-answer", "--server", srv.web_url, "--user", "alice", "--password-file", str(pw))
    code, out = _cli(*common, tmp=tmp_path)  # no trust configured: the certificate is unknown
    assert code == 4 and out["error"]["kind"] == "UntrustedCertificate"
    assert out["error"]["fingerprint"] == fingerprint(cert(srv)) and out["error"]["self_signed"]
    code, out = _cli(*common, "--ca-file", str(cert(srv)), tmp=tmp_path)
    assert code == 3 and out["error"]["kind"] == "BadCredentials"
    code, out = _cli("--headless", "--server", srv.web_url, "--user", "alice", "--password-file", str(pw),
                     tmp=tmp_path)
    assert code == 2 and "--auto-answer" in out["error"]["message"]
    code, out = _cli("--echo-test", "--user", "alice", "--password-file", str(pw), tmp=tmp_path)
    assert code == 2 and "no server" in out["error"]["message"]
    # the configuration file supplies what the command line does not
    cfg = tmp_path / "cfg" / "homeline"
    cfg.mkdir(parents=True)
    pw.write_text("alice-pw\n")
    (cfg / "softphone.toml").write_text(f'server = "{srv.web_url}"\nuser = "alice"\npassword_file = "{pw}"\n'
                                        f'trust_fingerprint = "{fingerprint(cert(srv))}"\n')
    code, out = _cli("--echo-test", "--duration", "3", tmp=tmp_path)
    assert code == 0 and out["echo_test"]["passed"], out
    assert out["server"] == srv.web_url
    assert (tmp_path / "state" / "homeline" / "softphone.log").stat().st_size > 0
    code, out = _cli("--echo-test", "--config", str(tmp_path / "nowhere.toml"), tmp=tmp_path)
    assert code == 2 and "does not exist" in out["error"]["message"]
    assert isinstance(CertificateError("x"), SoftphoneError)


# -- media figures and file audio (units the interop tests cannot pin down on loopback) ------------


class _Stat:
    def __init__(self, type_: str, **fields: object) -> None:
        self.type = type_
        self.__dict__.update(fields)


class _FakePc:
    def __init__(self, *stats: _Stat) -> None:
        self.stats = {str(i): s for i, s in enumerate(stats)}
        self.connectionState = "connected"

    async def getStats(self) -> dict:
        return self.stats


def test_media_stats_convert_units_and_warn_at_the_thresholds() -> None:
    from media.quality import mos_from_r, r_factor
    from softphone.fileaudio import FileAudio
    from softphone.media import SoftphoneMedia, _negotiated_codec

    answer = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 8\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    assert _negotiated_codec(answer) == ("PCMU", 8000)
    assert _negotiated_codec("m=audio 9 X 96\r\na=rtpmap:96 opus/48000/2\r\n") == ("opus", 48000)

    async def run() -> tuple:
        async def never(sdp: str) -> str:
            raise AssertionError
        media = SoftphoneMedia(FileAudio(), never)
        media.codec, media.clock_rate = "PCMU", 8000
        media.pc = _FakePc(_Stat("inbound-rtp", packetsReceived=990, packetsLost=10, jitter=80),  # 80/8000 s
                           _Stat("remote-inbound-rtp", roundTripTime=0.05),
                           _Stat("outbound-rtp", packetsSent=1000))
        good = await media.stats()
        media.pc = _FakePc(_Stat("inbound-rtp", packetsReceived=1080, packetsLost=20, jitter=400),
                           _Stat("remote-inbound-rtp", roundTripTime=0.45),
                           _Stat("outbound-rtp", packetsSent=1100))
        bad = await media.stats()
        media.pc = None
        return good, bad

    good, bad = asyncio.run(run())
    assert good.jitter_ms == pytest.approx(10.0) and good.rtt_ms == pytest.approx(50.0)  # RTP units -> ms
    assert good.loss_pct == pytest.approx(1.0) and good.packets_sent == 1000
    assert good.mos == pytest.approx(mos_from_r(r_factor("PCMU", 25 + 10 + 60, 1.0)))  # RTT/2 + jitter + 60 ms
    assert good.warnings == []
    # the interval since the previous look: 90 received, 10 lost = 10 %; jitter 50 ms; RTT 450 ms
    assert bad.loss_pct == pytest.approx(10.0) and bad.total_loss_pct == pytest.approx(100 * 20 / 1100)
    assert bad.jitter_ms == pytest.approx(50.0)
    assert {w["metric"] for w in bad.warnings} == {"rtt", "jitter", "loss", "mos"} and bad.mos < 3.5
    assert bad.as_dict()["rtt_ms"] == 450.0


def test_file_audio_paces_loops_resamples_and_records(tmp_path: Path) -> None:
    import time

    import numpy as np

    from softphone.fileaudio import EchoAudio, FileAudio
    from tests.audio import dominant_frequency, read_wav, write_tone_wav

    src = tmp_path / "tone.wav"
    write_tone_wav(str(src), 1000, 0.5, rate=8000)  # 0.5 s at 8 kHz: resampled, then looped
    port = FileAudio(play=src, record=tmp_path / "out.wav")
    frames = []
    start = time.monotonic()
    while time.monotonic() - start < 1.0:
        f = port.capture()
        if f is not None:
            frames.append(f)
            port.play(f)
        time.sleep(0.002)
    port.close()
    assert 48 <= len(frames) <= 52  # real time: one frame per 20 ms
    assert all(f.dtype == np.int16 and f.shape == (960,) for f in frames)
    mic = np.concatenate(frames).astype(np.float32) / 32768
    assert abs(dominant_frequency(mic, 48000) - 1000) < 5 and len(mic) > 0.9 * 48000  # beyond the 0.5 s file
    rec, rate = read_wav(str(tmp_path / "out.wav"))
    assert rate == 48000 and len(rec) == 960 * len(frames) and port.counters()["captured"] == len(frames)
    assert -15 < port.levels()["input_dbfs"] < -5  # 0.3 full scale sine: about -13.5 dBFS

    echo = EchoAudio()
    assert echo.capture() is not None and echo.capture() is None  # the first frame, then not due yet
    heard = np.full(960, 1234, np.int16)
    echo.play(heard)
    time.sleep(0.025)
    assert np.array_equal(echo.capture(), heard)  # what was heard goes back, one frame later
    time.sleep(0.025)
    assert not echo.capture().any()  # nothing more heard: silence
    time.sleep(0.3)  # a stalled reader: the backlog is bounded
    got = [echo.capture() for _ in range(20)]
    assert sum(g is not None for g in got) <= 6
    with pytest.raises(ConfigError):
        FileAudio(play=tmp_path / "missing.wav")
