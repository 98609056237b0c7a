"""IVR external numbers in the configuration: the trunk must exist and have a proxy to dial
through (an error at load naming file, key and reason), and the ring timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

from acd.config import load_config
from acd.errors import ConfigError
from tests.ivr.helpers import load

MENU = """
[ivr.m]
prompt = "ivr/m"
[ivr.m.options]
"1" = {action = "echo"}
"""

SERVER = """
[trunks.carrier]
allow = ["192.0.2.0/24"]
proxy = "sip:carrier.example"

[trunks.inbound]
allow = ["127.0.0.0/8"]

[ivr.main]
prompt = "ivr/transfer"

[ivr.main.options]
"4" = {action = "external", number = "5550100", trunk = "TRUNK"}
"""


def test_external_option_parses_with_its_ring_timeout() -> None:
    cfg = load(MENU + '"4" = {action = "external", number = "+331", trunk = "carrier"}\n'
                      '"5" = {action = "external", number = "555", trunk = "carrier", ring_timeout_s = 2.5}\n',
               known_trunks={"carrier"}, dialable_trunks={"carrier"})
    options = cfg.menu("m").options
    assert (options["4"].number, options["4"].trunk, options["4"].ring_timeout_s) == ("+331", "carrier", 30.0)
    assert options["5"].ring_timeout_s == 2.5


@pytest.mark.parametrize(("option", "key", "reason"), [
    ('{action = "external", number = "555", trunk = "inbound"}', "ivr.m.options.4.trunk", "has no proxy"),
    ('{action = "external", number = "555", trunk = "carrier", ring_timeout_s = 0}',
     "ivr.m.options.4.ring_timeout_s", "between 1 and 300 seconds"),
    ('{action = "echo", ring_timeout_s = 5}', "ivr.m.options.4.ring_timeout_s", "not used with action = 'echo'"),
])
def test_external_option_errors(option: str, key: str, reason: str) -> None:
    with pytest.raises(ConfigError) as info:
        load(MENU + f'"4" = {option}\n', known_trunks={"carrier", "inbound"}, dialable_trunks={"carrier"})
    assert (info.value.file, info.value.key) == ("ivr.toml", key), str(info.value)
    assert reason in info.value.reason, str(info.value)


def test_on_failure_external_trunk_needs_a_proxy_too() -> None:
    text = MENU.replace('prompt = "ivr/m"', 'prompt = "ivr/m"\non_failure = {action = "external", '
                                            'number = "555", trunk = "inbound"}')
    with pytest.raises(ConfigError) as info:
        load(text, known_trunks={"inbound"}, dialable_trunks=set())
    assert info.value.key == "ivr.m.on_failure.trunk"


def test_server_config_rejects_an_external_trunk_without_proxy(tmp_path: Path) -> None:
    path = tmp_path / "homeline.toml"
    path.write_text(SERVER.replace("TRUNK", "inbound"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert (err.file, err.key) == (str(path), "ivr.main.options.4.trunk")
    assert err.reason == ("trunk 'inbound' has no proxy: external numbers are dialled through the trunk's "
                          "proxy (set trunks.inbound.proxy)")
    assert str(path) in str(err) and "ivr.main.options.4.trunk" in str(err)


def test_server_config_rejects_an_unknown_external_trunk(tmp_path: Path) -> None:
    path = tmp_path / "homeline.toml"
    path.write_text(SERVER.replace("TRUNK", "carier"), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.key == "ivr.main.options.4.trunk"
    assert "no such trunk 'carier'; did you mean 'carrier'" in info.value.reason


def test_server_config_accepts_an_external_trunk_with_proxy(tmp_path: Path) -> None:
    path = tmp_path / "homeline.toml"
    path.write_text(SERVER.replace("TRUNK", "carrier"), encoding="utf-8")
    option = load_config(path).menus.menu("main").options["4"]
    assert (option.action, option.trunk, option.ring_timeout_s) == ("external", "carrier", 30.0)
