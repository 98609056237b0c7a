"""The queue_log file, byte for byte in Asterisk's format, against the table and a parser
written here the way queue_log readers parse it (split on '|': 5 fixed fields, then data)."""

from __future__ import annotations

import random
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from acd.engine import Engine, engine_config_from_toml
from acd.engine.events import AgentBreak, AgentLogin, AgentLogout, AgentReady, CallEnters, \
    CallerHangup, OfferAnswered
from acd.engine.records import QueueLogEntry, format_queue_log_line
from acd.store import StoreError, open_store
from acd.store.queue_log_file import QueueLogFile, read_lines
from acd.store.sqlite import DB_NAME, QUEUE_LOG_NAME, SqliteStore

T0 = 1_700_000_000

# A scripted day: (entry, the line Asterisk's app_queue writes for it).
SCRIPT: list[tuple[QueueLogEntry, str]] = [
    (QueueLogEntry(T0 + 0.2, "", "support", "SIP/1001", "ADDMEMBER"),
     "1700000000|NONE|support|SIP/1001|ADDMEMBER|"),
    (QueueLogEntry(T0 + 1.0, "1700000001.7", "support", "", "ENTERQUEUE", ("", "5551234", "1")),
     "1700000001|1700000001.7|support|NONE|ENTERQUEUE||5551234|1"),
    (QueueLogEntry(T0 + 11.999, "1700000001.7", "support", "SIP/1001", "RINGNOANSWER",
                   ("10000",)),
     "1700000011|1700000001.7|support|SIP/1001|RINGNOANSWER|10000"),
    (QueueLogEntry(T0 + 14.5, "1700000001.7", "support", "SIP/1001", "CONNECT",
                   ("13", "1700000012.8", "2")),
     "1700000014|1700000001.7|support|SIP/1001|CONNECT|13|1700000012.8|2"),
    (QueueLogEntry(T0 + 134.0, "1700000001.7", "support", "SIP/1001", "COMPLETECALLER",
                   ("13", "120", "1")),
     "1700000134|1700000001.7|support|SIP/1001|COMPLETECALLER|13|120|1"),
    (QueueLogEntry(T0 + 140.0, "1700000140.9", "support", "", "ENTERQUEUE", ("", "5550002", "1")),
     "1700000140|1700000140.9|support|NONE|ENTERQUEUE||5550002|1"),
    (QueueLogEntry(T0 + 150.0, "1700000140.9", "support", "", "ABANDON", ("1", "1", "10")),
     "1700000150|1700000140.9|support|NONE|ABANDON|1|1|10"),
    (QueueLogEntry(T0 + 160.0, "1700000160.10", "support", "", "ENTERQUEUE",
                   ("", "Bob|Smith\n", "1")),
     "1700000160|1700000160.10|support|NONE|ENTERQUEUE||Bob_Smith_|1"),
    (QueueLogEntry(T0 + 460.0, "1700000160.10", "support", "", "EXITWITHTIMEOUT",
                   ("1", "1", "300")),
     "1700000460|1700000160.10|support|NONE|EXITWITHTIMEOUT|1|1|300"),
    (QueueLogEntry(T0 + 500.0, "", "support", "SIP/1001", "PAUSE", ("lunch",)),
     "1700000500|NONE|support|SIP/1001|PAUSE|lunch"),
    (QueueLogEntry(T0 + 2300.0, "", "support", "SIP/1001", "UNPAUSE", ("lunch",)),
     "1700002300|NONE|support|SIP/1001|UNPAUSE|lunch"),
    (QueueLogEntry(T0 + 2400.0, "1700002400.11", "support", "", "EXITWITHKEY",
                   ("9", "1", "1", "4")),
     "1700002400|1700002400.11|support|NONE|EXITWITHKEY|9|1|1|4"),
    (QueueLogEntry(T0 + 3600.0, "", "support", "SIP/1001", "REMOVEMEMBER"),
     "1700003600|NONE|support|SIP/1001|REMOVEMEMBER|"),
]


def parse_asterisk_queue_log(data: bytes) -> list[dict[str, object]]:
    """A minimal queue_log reader, as reporting tools write them; tolerates a torn last line."""
    out = []
    lines = data.split(b"\n")
    for raw in lines[:-1]:  # the last element is b"" or a partial line
        fields = raw.decode("utf-8").split("|")
        assert len(fields) >= 6, raw
        out.append({"time": int(fields[0]), "callid": fields[1], "queuename": fields[2],
                    "agent": fields[3], "event": fields[4], "data": fields[5:]})
    return out


def test_file_is_byte_exact(store: SqliteStore) -> None:
    for entry, _ in SCRIPT:
        store.write(entry)
    expected = "".join(line + "\n" for _, line in SCRIPT).encode()
    assert (store.data_dir / QUEUE_LOG_NAME).read_bytes() == expected


def test_file_and_table_agree_through_an_independent_parser(store: SqliteStore) -> None:
    for entry, _ in SCRIPT[:5]:
        store.write(entry)
    store.write_all([e for e, _ in SCRIPT[5:]])
    parsed = parse_asterisk_queue_log((store.data_dir / QUEUE_LOG_NAME).read_bytes())
    assert len(parsed) == len(SCRIPT)
    assert [p["event"] for p in parsed] == [line.split("|")[4] for _, line in SCRIPT]
    rows = store.queue_log()
    assert [{"time": r.time, "callid": r.call_id, "queuename": r.queue, "agent": r.agent,
             "event": r.event, "data": list(r.data) or [""]} for r in rows] == parsed
    assert [r.line for r in rows] == [line for _, line in SCRIPT]
    # Asterisk's realtime columns (data1..data5) for tools reading the table
    with closing(sqlite3.connect(store.data_dir / DB_NAME)) as conn:
        cols = conn.execute("SELECT time, callid, queuename, agent, event, data1, data2, data3, "
                            "data4, data5 FROM queue_log ORDER BY id").fetchall()
    for (t, callid, qname, agent, event, *data), p in zip(cols, parsed):
        assert (t, callid, qname, agent, event) == (p["time"], p["callid"], p["queuename"],
                                                    p["agent"], p["event"])
        assert [d for d in data if d] == [d for d in p["data"] if d]  # type: ignore[union-attr]


def test_engine_output_goes_to_the_file_unchanged(store: SqliteStore) -> None:
    cfg = engine_config_from_toml({"support": {"ring_timeout_s": 10}},
                                  {"1001": {"queues": {"support": 1}}},
                                  {"breaks": {"lunch": {}}, "reconcile_after_s": 0}, file="t.toml")
    eng = Engine(cfg, rng=random.Random(1), epoch=float(T0))
    script = [(0, AgentLogin("1001")), (1, AgentBreak("1001", "lunch")),
              (2, CallEnters("c1", "support", caller="555")), (5, AgentReady("1001")),
              (7, OfferAnswered("1001", "c1", leg="c1.leg")), (60, CallerHangup("c1")),
              (61, CallEnters("c2", "support")), (62, CallerHangup("c2")),
              (70, AgentLogout("1001"))]
    emitted: list[QueueLogEntry] = []
    for now, ev in script:
        eng.handle(ev, now)
        actions = eng.actions()
        emitted += [a for a in actions if isinstance(a, QueueLogEntry)]
        store.write_all(actions)
    assert {e.event for e in emitted} >= {"ADDMEMBER", "PAUSE", "UNPAUSE", "ENTERQUEUE",
                                          "CONNECT", "COMPLETECALLER", "ABANDON", "REMOVEMEMBER"}
    text = (store.data_dir / QUEUE_LOG_NAME).read_text()
    assert text == "".join(format_queue_log_line(e) + "\n" for e in emitted)


def test_reader_tolerates_a_torn_last_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "queue_log"
    path.write_bytes(b"1|NONE|q|a|ADDMEMBER|\n2|c|q|NONE|ENTERQ")
    assert list(read_lines(path)) == ["1|NONE|q|a|ADDMEMBER|"]
    assert "partial last line" in caplog.text
    assert len(parse_asterisk_queue_log(path.read_bytes())) == 1
    path.write_bytes(b"")
    assert list(read_lines(path)) == []


def test_rotation_by_size_keeps_n(tmp_path: Path) -> None:
    f = QueueLogFile(tmp_path / "queue_log", max_bytes=1024, keep=2)
    lines = [f"{T0 + i}|c{i}|support|NONE|ENTERQUEUE||5550000|{i:04d}" for i in range(120)]
    for line in lines:
        f.append([line])
    f.close()
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["queue_log", "queue_log.1", "queue_log.2"]
    sizes = [(tmp_path / n).stat().st_size for n in names]
    assert all(s <= 1024 for s in sizes)
    kept = (list(read_lines(tmp_path / "queue_log.2")) + list(read_lines(tmp_path / "queue_log.1"))
            + list(read_lines(tmp_path / "queue_log")))
    assert kept == lines[-len(kept):]  # the newest lines, in order, none torn
    assert f.rotations >= 3 and len(kept) < len(lines)


def test_rotation_through_the_store(tmp_path: Path) -> None:
    with open_store(tmp_path, queue_log_max_bytes=2048, queue_log_keep=3) as s:
        for i in range(300):  # ~43 bytes a line: 6 files' worth
            s.write(QueueLogEntry(T0 + i, f"c{i}", "support", "", "ABANDON", ("1", "1", str(i))))
        assert len(s.queue_log(limit=1000)) == 300  # the table keeps everything
    assert (tmp_path / "queue_log.3").exists() and not (tmp_path / "queue_log.4").exists()


def test_bad_lines_and_options_refused(tmp_path: Path) -> None:
    f = QueueLogFile(tmp_path / "queue_log")
    with pytest.raises(StoreError, match="one line"):
        f.append(["1|a\n2|b"])
    with pytest.raises(StoreError):
        QueueLogFile(tmp_path / "q", max_bytes=10)
    with pytest.raises(StoreError):
        QueueLogFile(tmp_path / "q", keep=0)
    f.close()


def test_cli_style_store_does_not_touch_the_file(tmp_path: Path) -> None:
    with open_store(tmp_path, queue_log_file=False) as s:
        s.write(SCRIPT[0][0])
        assert len(s.queue_log()) == 1
    assert not (tmp_path / QUEUE_LOG_NAME).exists()
