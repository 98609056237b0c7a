"""Start the real server as a subprocess on free loopback ports, for interop tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEER = ROOT / "tests" / "peers" / "pjsua_peer.py"


_GIVEN: set[int] = set()  # ports handed out by this process: never twice (a config takes several)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both UDP and TCP (so one number serves both listeners)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            if port in _GIVEN:
                continue
            try:
                with socket.socket(family, socket.SOCK_STREAM) as t:
                    t.bind((host, port))
                    # leave one above free too (TLS listener) when possible
            except OSError:
                continue
            _GIVEN.add(port)
            return port
    raise RuntimeError("no free port")


def free_rtp_range(size: int = 200) -> tuple[int, int]:
    base = 10000 + (os.getpid() * 37 % 100) * 200  # below the ephemeral range used by free_port
    if base + size > 32000:
        base = 32000 - size
    return base, base + size - 1


DEFAULT_TRUNKS = """
[trunks.local]
allow = ["127.0.0.0/8", "::1/128"]
"""

DEFAULT_ACD = """
[queues.support]
"""

DEFAULT_DIALPLAN = """
[[dialplan]]
match = "echo"
action = "echo"

[[dialplan]]
match = "support"
action = "queue"
target = "support"

[[dialplan]]
match = "*"
action = "reject"
status = 404
"""


@dataclass
class RunningServer:
    proc: subprocess.Popen
    config: Path
    data_dir: Path
    log: Path
    sip_port: int
    tls_port: int
    host: str = "127.0.0.1"
    extra: dict = field(default_factory=dict)
    web_url: str = ""

    def uri(self, user: str, transport: str = "udp") -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        if transport == "tls":
            return f"sip:{user}@{host}:{self.tls_port};transport=tls"
        suffix = "" if transport == "udp" else f";transport={transport}"
        return f"sip:{user}@{host}:{self.sip_port}{suffix}"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, pattern: str, timeout: float = 5.0, count: int = 1) -> str:
        """Wait until the server log matches ``pattern`` (a regex) ``count`` times."""
        import re

        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if len(re.findall(pattern, text)) >= count or time.monotonic() > deadline:
                assert len(re.findall(pattern, text)) >= count, f"{pattern!r} not in log:\n{text[-4000:]}"
                return text
            time.sleep(0.05)

    def status(self) -> dict:
        out = subprocess.run([sys.executable, "-m", "acd.cli", "status", "--config", str(self.config)],
                             capture_output=True, text=True, timeout=20, cwd=ROOT)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def write_config(tmp: Path, *, host: str = "127.0.0.1", trunks: str = DEFAULT_TRUNKS,
                 dialplan: str = DEFAULT_DIALPLAN, server_extra: str = "", sip_extra: str = "",
                 unknown_source: str = "reject", log_level: str = "debug", rtp_ports: int = 200,
                 rtp_extra: str = "", tls_cert: str = "", acd: str = DEFAULT_ACD, web_extra: str = "",
                 transports: tuple[str, ...] = ("udp", "tcp", "tls")) -> tuple[Path, int, int]:
    sip_port = free_port(host)
    tls_port = free_port(host)
    rtp_min, rtp_max = free_rtp_range(rtp_ports)
    listen = ""
    for t in transports:
        port = tls_port if t == "tls" else sip_port
        listen += f'\n[[sip.listen]]\ntransport = "{t}"\naddress = "{host}"\nport = {port}\n'
        if t == "tls" and tls_cert:
            listen += tls_cert
    web_port = free_port("127.0.0.1")
    text = f"""
[server]
data_dir = "{tmp / 'data'}"
log_level = "{log_level}"
drain_seconds = 10
{server_extra}

[sip]
unknown_source = "{unknown_source}"
{sip_extra}
{listen}

[rtp]
address = "{host}"
port_min = {rtp_min}
port_max = {rtp_max}
{rtp_extra}

[web]
address = "127.0.0.1"
port = {web_port}
{web_extra}

{trunks}
{acd}
{dialplan}
"""
    path = tmp / "acd.toml"
    path.write_text(text)
    return path, sip_port, tls_port


def start_server(tmp: Path, **kwargs: object) -> RunningServer:
    config, sip_port, tls_port = write_config(tmp, **kwargs)  # type: ignore[arg-type]
    log = tmp / "server.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-m", "acd.cli", "serve", str(config)], cwd=ROOT,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    server = RunningServer(proc, config, tmp / "data", log, sip_port, tls_port,
                           host=str(kwargs.get("host", "127.0.0.1")))
    web = tomllib.loads(config.read_text())["web"]
    server.web_url = f"{'https' if web.get('tls', True) else 'http'}://127.0.0.1:{web['port']}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited {proc.returncode}:\n{server.log_text()}")
        if "Homeline ready" in server.log_text():
            return server
        time.sleep(0.05)
    server.stop(signal.SIGKILL)
    raise RuntimeError(f"server did not start:\n{server.log_text()}")


def run_peer(*args: str, timeout: float = 40.0) -> tuple[int, dict]:
    """Run the pjsua2 peer; returns (exit code, its JSON result)."""
    out = subprocess.run([sys.executable, str(PEER), *args], capture_output=True, text=True,
                         timeout=timeout, cwd=ROOT)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{") or ln.startswith("[")]
    result = json.loads(lines[-1]) if lines else {"error": out.stderr[-2000:]}
    return out.returncode, result
