"""Tests for acd.config: the shipped files load, every kind of error names file/key/reason."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
import tomllib
from pathlib import Path
from typing import Any

import pytest

from acd import config as config_mod
from acd.config import FILE_KEY, SYNTAX_KEY, load_config, validate_config
from acd.config_schema import Config, DialRule, SipListener, Trunk
from acd.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "config" / "demo.toml"
REFERENCE = ROOT / "config" / "reference.toml"
DOCS = ROOT / "docs" / "configuration.md"


def write(tmp_path: Path, text: str, name: str = "homeline.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def name_of(trunk: Trunk | None) -> str | None:
    return trunk.name if trunk is not None else None


def routed(cfg: Config, user: str, trunk: str | None = None) -> DialRule:
    rule = cfg.route(user, trunk)
    assert rule is not None
    return rule


def error_of(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.file == str(path)
    return info.value


# ------------------------------------------------------------------ shipped files


def test_demo_loads() -> None:
    cfg = load_config(DEMO)
    assert cfg.server.data_dir == ROOT / "data"
    assert [(lis.transport, lis.address, lis.port) for lis in cfg.sip.listen] == [
        ("udp", "127.0.0.1", 5060), ("tcp", "127.0.0.1", 5060), ("tls", "127.0.0.1", 5061)]
    assert cfg.sip.listen[2].self_signed
    assert (cfg.web.address, cfg.web.port, cfg.web.tls, cfg.web.cert) == ("127.0.0.1", 8443, True, None)
    local, secure = cfg.trunks
    assert local.name == "local" and not local.authenticates
    assert local.allow == (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))
    assert secure.name == "secure" and secure.allow == ()
    assert (secure.username, secure.password, secure.realm) == ("carrier", "demo-secret-change-me", "secure")
    assert [(r.match, r.action, r.target) for r in cfg.dialplan] == [
        ("echo", "echo", ""), ("support", "queue", "support"), ("menu", "ivr", "main"),
        ("*", "reject", "")]
    assert cfg.dialplan[-1].status == 404


def test_demo_trunk_matching_rule() -> None:
    cfg = load_config(DEMO)
    assert name_of(cfg.open_trunk_for("127.0.0.1")) == "local"
    assert name_of(cfg.open_trunk_for("::1")) == "local"
    assert name_of(cfg.open_trunk_for("::ffff:127.0.0.5")) == "local"
    assert cfg.open_trunk_for("192.0.2.1") is None
    assert [t.name for t in cfg.challenge_trunks_for("192.0.2.1")] == ["secure"]
    assert name_of(cfg.trunk_for_username("carrier", "192.0.2.1")) == "secure"
    assert cfg.trunk_for_username("nobody", "192.0.2.1") is None


def test_demo_dialplan_routes() -> None:
    cfg = load_config(DEMO)
    assert routed(cfg, "echo").action == "echo"
    assert routed(cfg, "support").target == "support"
    assert routed(cfg, "menu").target == "main"
    assert routed(cfg, "12345").status == 404


def test_reference_loads_with_the_defaults() -> None:
    cfg = load_config(REFERENCE)
    defaults = validate_config({}, str(REFERENCE))
    assert cfg == defaults
    assert cfg.sip.listen == (SipListener(),)
    assert cfg.server.data_dir == REFERENCE.parent / "data"


def _uncomment_templates(text: str) -> str:
    """Turn the commented ``# key = value`` / ``# [table]`` template lines into TOML."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^# (\[\[?[a-zA-Z.]+\]\]?|[a-z0-9_]+ = .*)$", line)
        out.append(m.group(1) if m else line)
    return "\n".join(out).replace("NAME", "example")


def test_reference_templates_load_once_uncommented(tmp_path: Path) -> None:
    text = _uncomment_templates(REFERENCE.read_text(encoding="utf-8"))
    text = text.replace('proxy = ""', 'proxy = "sip:carrier.example"')  # register needs one
    cfg = load_config(write(tmp_path, text))
    trunk = cfg.trunk("example")
    assert trunk is not None and trunk.register is not None
    assert trunk.register.registrar == "sip:carrier.example"
    assert (trunk.realm, trunk.from_user) == ("", "homeline")
    assert cfg.dialplan[0].match == "*" and cfg.dialplan[0].action == "reject"


def test_reference_and_docs_mention_every_key() -> None:
    reference = REFERENCE.read_text(encoding="utf-8")
    docs = DOCS.read_text(encoding="utf-8")
    key_sets = [config_mod.SERVER_KEYS, config_mod.SIP_KEYS, config_mod.TIMER_KEYS,
                config_mod.LISTEN_KEYS, config_mod.RTP_KEYS, config_mod.WEB_KEYS,
                config_mod.TRUNK_KEYS, config_mod.REGISTER_KEYS, config_mod.DIALPLAN_KEYS]
    for keys in key_sets:
        for key in keys:
            if key not in ("timers", "listen", "register"):
                assert re.search(rf"^(# )?{key} = ", reference, re.M), key
            assert f"`{key}`" in docs or f"{key}]" in docs, key
    for section in config_mod.SECTIONS:
        assert f"[{section}" in reference or f"[[{section}" in reference, section


def test_docs_toml_examples_parse() -> None:
    blocks = re.findall(r"```toml\n(.*?)```", DOCS.read_text(encoding="utf-8"), re.S)
    assert blocks
    for block in blocks:
        tomllib.loads(block)


# ------------------------------------------------------------------ one test per error kind


def test_bad_type(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[sip.listen]]\nport = "5060"\n')
    assert err.key == "sip.listen[0].port"
    assert err.reason == "expected an integer, got string '5060'"


def test_bool_is_not_an_integer(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[server]\ndrain_seconds = true\n")
    assert (err.key, err.reason) == ("server.drain_seconds", "expected an integer, got boolean true")


def test_out_of_range(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[sip.timers]\nt1_ms = 5\n")
    assert err.key == "sip.timers.t1_ms"
    assert err.reason == "must be between 10 and 10000, got 5"


def test_t2_below_t1(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[sip.timers]\nt1_ms = 1000\nt2_ms = 500\n")
    assert err.key == "sip.timers.t2_ms"
    assert "between 1000 and" in err.reason


def test_unknown_key_with_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[[sip.listen]]\nprot = 5060\n")
    assert err.key == "sip.listen[0].prot"
    assert err.reason == "unknown key; did you mean 'port'?"


def test_unknown_section(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[trunk.carrier]\nallow = []\n")
    assert err.key == "trunk"
    assert err.reason == "unknown key; did you mean 'trunks'?"


def test_unknown_choice_with_suggestion(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[sip.listen]]\ntransport = "tpc"\n')
    assert err.key == "sip.listen[0].transport"
    assert err.reason.startswith("'tpc' is not one of: udp, tcp, tls")
    assert err.reason.endswith("did you mean 'tcp'?")


def test_bad_cidr(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.carrier]\nallow = ["10.0.0.0/8", "10.0.0.300/8"]\n')
    assert err.key == "trunks.carrier.allow[1]"
    assert err.reason == "not a valid network: '10.0.0.300/8'"


def test_cidr_with_host_bits(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.carrier]\nallow = ["10.0.0.1/8"]\n')
    assert err.key == "trunks.carrier.allow[0]"
    assert err.reason == "not a valid network: '10.0.0.1/8' (host bits set)"


def test_bad_regex(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[dialplan]]\nmatch = "re:(12"\naction = "echo"\n')
    assert err.key == "dialplan[0].match"
    assert err.reason.startswith("not a valid regular expression: 're:(12' (")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.toml"
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.file, info.value.key, info.value.reason) == (str(path), FILE_KEY, "no such file")


def test_toml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[server]\nlog_level = \"info\"\ndrain_seconds = = 3\n")
    assert err.key == SYNTAX_KEY
    assert err.reason.startswith("line 3, column 17: ")


def test_dialplan_unknown_trunk(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.carrier]\n[[dialplan]]\nmatch = "*"\ntrunk = "carier"\n'
                             'action = "echo"\n')
    assert err.key == "dialplan[0].trunk"
    assert err.reason == "unknown trunk 'carier'; did you mean 'carrier'?"


def test_tls_cert_without_key(tmp_path: Path) -> None:
    (tmp_path / "cert.pem").write_text("x")
    err = error_of(tmp_path, '[[sip.listen]]\ntransport = "tls"\ncert = "cert.pem"\n')
    assert err.key == "sip.listen[0].key"
    assert err.reason.startswith("cert is set but key is empty; set both or neither")


def test_cert_on_udp_listener(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[sip.listen]]\ncert = "cert.pem"\n')
    assert (err.key, err.reason) == ("sip.listen[0].cert", "only for transport = 'tls'")


def test_cert_file_must_exist(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[web]\ncert = "c.pem"\nkey = "k.pem"\n')
    assert err.key == "web.cert"
    assert err.reason == f"no such file: {str(tmp_path / 'c.pem')!r}"


def test_colliding_sip_ports(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[sip.listen]]\ntransport = "tcp"\n'
                             '[[sip.listen]]\ntransport = "udp"\n'
                             '[[sip.listen]]\ntransport = "tls"\naddress = "0.0.0.0"\nport = 5060\n')
    assert err.key == "sip.listen[2].port"
    assert err.reason == ("port 5060/tcp on 0.0.0.0 is already used by sip.listen[0] "
                          "(tcp on 127.0.0.1)")


def test_web_port_collides_with_sip(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[web]\nport = 5060\n")
    assert err.key == "web.port"
    assert err.reason == "port 5060 on 127.0.0.1 is already used by sip.listen[0] (udp on 127.0.0.1)"


def test_different_addresses_do_not_collide(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[[sip.listen]]\n[[sip.listen]]\naddress = "::1"\n'
                                      '[web]\naddress = "::1"\nport = 5061\n'))
    assert [lis.address for lis in cfg.sip.listen] == ["127.0.0.1", "::1"]


def test_rtp_range_collides_with_sip(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[rtp]\nport_min = 5000\nport_max = 6000\n")
    assert err.key == "rtp.port_min"
    assert "includes UDP port 5060 of sip.listen[0]" in err.reason


def test_rtp_port_min_must_be_even(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[rtp]\nport_min = 20001\n")
    assert err.key == "rtp.port_min" and err.reason.startswith("must be even")


def test_unknown_codec(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[rtp]\ncodecs = ["PCMU", "OPUS2"]\n')
    assert err.key == "rtp.codecs[1]"
    assert err.reason.endswith("did you mean 'opus'?")


def test_trunk_without_allow_or_credentials(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[trunks.dead]\nallow = []\n")
    assert err.key == "trunks.dead.allow"
    assert err.reason.startswith("empty and the trunk has no username/password")


def test_username_without_password(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.a]\nusername = "u"\n')
    assert err.key == "trunks.a.password"
    assert err.reason == "username is set but password is empty; set both or neither"


def test_duplicate_digest_username(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.a]\nusername = "u"\npassword = "p"\n'
                             '[trunks.b]\nusername = "u"\npassword = "q"\n')
    assert err.key == "trunks.b.username"


def test_same_network_on_two_open_trunks(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.a]\nallow = ["10.0.0.0/8"]\n[trunks.b]\nallow = ["10.0.0.0/8"]\n')
    assert err.key == "trunks.b.allow[0]"
    assert "also allowed by trunk 'a'" in err.reason


def test_bad_trunk_name(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks."My Carrier"]\n')
    assert err.key == 'trunks."My Carrier"'
    assert err.reason == "trunk names must match [a-z0-9_-]+"


def test_register_requires_proxy_or_registrar(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[trunks.c]\n[trunks.c.register]\nexpires = 600\n")
    assert err.key == "trunks.c.register"
    assert err.reason == "registration needs a registrar or the trunk's proxy"


def test_options_interval_requires_proxy(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[trunks.c]\noptions_interval = 30\n")
    assert err.key == "trunks.c.options_interval"
    assert err.reason.startswith("requires proxy")


def test_bad_proxy_uri(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[trunks.c]\nproxy = "http://carrier.example"\n')
    assert err.key == "trunks.c.proxy"
    assert err.reason.startswith("not a valid SIP URI: 'http://carrier.example'")


def test_listen_must_be_array_of_tables(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[sip.listen]\nport = 5060\n")
    assert err.key == "sip.listen"
    assert err.reason == "expected an array of tables ([[sip.listen]]), got a table"


def test_dialplan_queue_needs_target(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[dialplan]]\nmatch = "1"\naction = "queue"\n')
    assert (err.key, err.reason) == ("dialplan[0].target", "required for action = 'queue' (the queue name)")


def test_dialplan_status_only_for_reject(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[dialplan]]\nmatch = "1"\naction = "echo"\nstatus = 486\n')
    assert (err.key, err.reason) == ("dialplan[0].status", "only for action = 'reject'")


def test_dialplan_missing_action(tmp_path: Path) -> None:
    err = error_of(tmp_path, '[[dialplan]]\nmatch = "1"\n')
    assert (err.key, err.reason) == ("dialplan[0].action", "required key is missing")


def test_reserved_sections_must_be_tables(tmp_path: Path) -> None:
    err = error_of(tmp_path, 'queues = "support"\n')
    assert (err.key, err.reason) == ("queues", "expected a table, got string 'support'")


def test_str_of_error_is_the_check_config_line(tmp_path: Path) -> None:
    err = error_of(tmp_path, "[server]\nlog_levle = \"info\"\n")
    expected = "server.log_levle: unknown key; did you mean 'log_level'?"
    assert str(err) == f"{tmp_path / 'homeline.toml'}: {expected}"


# ------------------------------------------------------------------ behaviour of the result


def test_relative_paths_resolve_against_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "homeline"
    (conf / "tls").mkdir(parents=True)
    for name in ("sip.crt", "sip.key"):
        (conf / "tls" / name).write_text("x")
    (tmp_path / "web.crt").write_text("x")
    (tmp_path / "web.key").write_text("x")
    path = write(conf, '[server]\ndata_dir = "../../var"\n'
                       '[[sip.listen]]\ntransport = "tls"\ncert = "tls/sip.crt"\nkey = "tls/sip.key"\n'
                       f'[web]\ncert = "../../web.crt"\nkey = {str(tmp_path / "web.key")!r}\n')
    monkeypatch.chdir(tmp_path / "etc")  # the working directory must not matter
    cfg = load_config(path)
    assert cfg.server.data_dir == tmp_path / "var"
    assert cfg.server.tls_dir == tmp_path / "var" / "tls"
    assert cfg.sip.listen[0].cert == conf / "tls" / "sip.crt"
    assert cfg.sip.listen[0].key == conf / "tls" / "sip.key"
    assert cfg.web.cert == tmp_path / "web.crt"
    assert cfg.web.key == tmp_path / "web.key"
    assert cfg.resolve_path("prompts/hello.wav") == conf / "prompts" / "hello.wav"
    assert cfg.base_dir == conf


def test_result_is_immutable(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, '[queues.support]\nskills = ["a", "b"]\n'
                                      '[trunks.t]\nallow = ["10.0.0.0/8"]\n'
                                      '[[dialplan]]\nmatch = "*"\naction = "echo"\n'))
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.sip.timers.t1_ms = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.trunks[0].allow = ()  # type: ignore[misc]
    assert isinstance(cfg.trunks, tuple) and isinstance(cfg.dialplan, tuple)
    assert isinstance(cfg.rtp.codecs, tuple) and isinstance(cfg.trunks[0].allow, tuple)
    with pytest.raises(TypeError):
        cfg.queues["support"] = {}  # type: ignore[index]
    assert cfg.queues["support"]["skills"] == ("a", "b")
    assert cfg.engine.queues["support"].skills == ("a", "b")
    with pytest.raises(TypeError):
        cfg.queues["support"]["x"] = 1  # type: ignore[index]


def test_regex_rule_is_a_full_match_and_trunk_filter() -> None:
    data: dict[str, Any] = {
        "trunks": {"carrier": {"allow": ["192.0.2.0/24"]}},
        "queues": {"sales": {}},
        "dialplan": [
            {"match": r"re:\+?4420\d{4}", "trunk": "carrier", "action": "queue", "target": "sales"},
            {"match": "*", "action": "reject", "status": 480, "reason": "Closed"},
        ],
    }
    cfg = validate_config(data, "mem.toml")
    assert routed(cfg, "+44201234", "carrier").target == "sales"
    assert routed(cfg, "+442012345", "carrier").action == "reject"  # no partial match
    assert routed(cfg, "+44201234", None).action == "reject"  # other trunk
    assert (routed(cfg, "x").status, routed(cfg, "x").reason) == (480, "Closed")


def test_most_specific_open_network_wins() -> None:
    data = {"trunks": {"wide": {"allow": ["10.0.0.0/8"]}, "narrow": {"allow": ["10.1.0.0/16"]},
                       "auth": {"allow": ["10.2.0.0/16"], "username": "u", "password": "p"}}}
    cfg = validate_config(data, "mem.toml")
    assert name_of(cfg.open_trunk_for("10.1.2.3")) == "narrow"
    assert name_of(cfg.open_trunk_for("10.9.9.9")) == "wide"
    assert cfg.challenge_trunks_for("192.0.2.1") == ()
    assert name_of(cfg.trunk_for_username("u", "10.2.0.1")) == "auth"
    assert cfg.trunk_for_username("u", "192.0.2.1") is None  # right password, wrong network


def test_config_equality_and_defaults() -> None:
    cfg = validate_config({}, "x.toml")
    assert isinstance(cfg, Config)
    assert cfg.trunks == () and cfg.dialplan == ()
    assert cfg.route("anything") is None
    assert cfg.web.tls and cfg.web.self_signed


def test_dialplan_queue_must_exist() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"queues": {"support": {}},
                         "dialplan": [{"match": "x", "action": "queue", "target": "suport"}]}, "q.toml")
    assert err.value.key == "dialplan[0].target" and "did you mean 'support'" in err.value.reason


def test_engine_errors_surface_at_load() -> None:
    with pytest.raises(ConfigError) as err:
        validate_config({"queues": {"support": {"strategy": "fastest"}}}, "q.toml")
    assert err.value.file == "q.toml" and err.value.key == "queues.support.strategy"


def test_ivr_skill_no_queue_member_has_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = write(tmp_path, """
[queues.support]
[agents.alice]
queues = {support = 2}
skills = {english = 1}
[ivr.main]
prompt = "digits/1"
[ivr.main.options]
"1" = {action = "queue", target = "support", skills = ["english"]}
"2" = {action = "queue", target = "support", skills = ["french"]}
""")
    with caplog.at_level("WARNING", logger="acd.config"):
        load_config(path)
    warned = [r.getMessage() for r in caplog.records if "has skill" in r.getMessage()]
    assert len(warned) == 1 and "ivr.main.options.2" in warned[0] and "french" in warned[0], warned


def test_dial_out_trunk_prefers_the_given_trunk_with_a_proxy(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, """
[trunks.inbound]
allow = ["10.0.0.0/8"]
[trunks.carrier]
allow = ["192.0.2.0/24"]
proxy = "sip:carrier.example"
[trunks.backup]
allow = ["198.51.100.0/24"]
proxy = "sip:backup.example"
"""))
    assert cfg.dial_out_trunk("backup") == "backup"
    assert cfg.dial_out_trunk("inbound") == "carrier" and cfg.dial_out_trunk() == "carrier"
    assert dataclasses.replace(cfg, trunks=cfg.trunks[:1]).dial_out_trunk("inbound") is None
