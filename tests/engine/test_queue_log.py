"""queue_log lines, byte for byte, against hand-written Asterisk-format expectations."""

from __future__ import annotations

from acd.engine.events import (
    AgentBreak,
    AgentHangup,
    AgentLogin,
    AgentLogout,
    AgentReady,
    CallEnters,
    CallerDigit,
    CallerHangup,
    OfferAnswered,
    WrapUpDone,
)
from acd.engine.records import QueueLogEntry, format_queue_log_line

from tests.engine.helpers import Sim, config


def test_format() -> None:
    e = QueueLogEntry(1366720340.9, "1366720340.303267", "MYQUEUE", "SIP/8007", "RINGNOANSWER",
                      ("1000",))
    assert format_queue_log_line(e) == "1366720340|1366720340.303267|MYQUEUE|SIP/8007|RINGNOANSWER|1000"
    assert format_queue_log_line(QueueLogEntry(5.0, "", "q", "", "ADDMEMBER")) == "5|NONE|q|NONE|ADDMEMBER|"
    odd = QueueLogEntry(5.0, "c|1", "q", "NONE", "ENTERQUEUE", ("", "Bob|\nX", "1"))
    assert format_queue_log_line(odd) == "5|c_1|q|NONE|ENTERQUEUE||Bob__X|1"


def test_a_day_in_the_queue_log() -> None:
    queues = {"support": {"wrapup_s": 5, "ring_timeout_s": 10, "max_wait_s": 300,
                          "exit_key": "9"},
              "sales": {"leave_when_empty": "yes"}}
    agents = {"1001": {"queues": {"support": 1, "sales": 1}}}
    acd = {"reconcile_after_s": 0, "no_answer_limit": 5, "reject_delay_s": 0,
           "breaks": {"lunch": {}}}
    s = Sim(config(queues, agents, acd), epoch=1_700_000_000.0)
    s.send(AgentLogin("1001"), at=0)
    s.send(AgentBreak("1001", "lunch"), at=1)
    s.send(CallEnters("1700000002.1", "support", caller="5551234"), at=2)
    s.send(CallEnters("1700000003.2", "support", caller="5550002"), at=3)
    s.send(CallEnters("1700000004.3", "support", caller="5550003"), at=4)
    s.send(CallEnters("1700000005.4", "sales", caller="5550004"), at=5)
    s.send(AgentReady("1001"), at=10)  # offered the oldest call: .1
    s.advance(20)  # no answer after 10 s; offered again at once (reject_delay_s = 0)
    s.send(OfferAnswered("1001", "1700000002.1", leg="1700000021.9"), at=23)
    s.send(CallerHangup("1700000002.1"), at=143)
    s.send(WrapUpDone("1001"), at=145)  # offered .2
    s.send(OfferAnswered("1001", "1700000003.2", leg="1700000146.10"), at=146)
    s.send(CallerHangup("1700000004.3"), at=150)  # abandons at position 1
    s.send(AgentHangup("1001", "1700000003.2"), at=206)
    s.send(CallEnters("1700000207.5", "support", caller="5550005"), at=207)
    s.send(AgentLogout("1001"), at=208)  # in wrap-up: after it (211)
    s.advance(211)  # sales' last member leaves: EXITEMPTY
    s.send(CallerDigit("1700000207.5", "9"), at=230)
    s.send(CallEnters("1700000300.6", "support", caller="5550006"), at=300)
    s.advance(600)
    assert s.qlog() == [
        "1700000000|NONE|support|1001|ADDMEMBER|",
        "1700000000|NONE|sales|1001|ADDMEMBER|",
        "1700000001|NONE|support|1001|PAUSE|lunch",
        "1700000001|NONE|sales|1001|PAUSE|lunch",
        "1700000002|1700000002.1|support|NONE|ENTERQUEUE||5551234|1",
        "1700000003|1700000003.2|support|NONE|ENTERQUEUE||5550002|2",
        "1700000004|1700000004.3|support|NONE|ENTERQUEUE||5550003|3",
        "1700000005|1700000005.4|sales|NONE|ENTERQUEUE||5550004|1",
        "1700000010|NONE|support|1001|UNPAUSE|lunch",
        "1700000010|NONE|sales|1001|UNPAUSE|lunch",
        "1700000020|1700000002.1|support|1001|RINGNOANSWER|10000",
        "1700000023|1700000002.1|support|1001|CONNECT|21|1700000021.9|3",
        "1700000143|1700000002.1|support|1001|COMPLETECALLER|21|120|1",
        "1700000146|1700000003.2|support|1001|CONNECT|143|1700000146.10|1",
        "1700000150|1700000004.3|support|NONE|ABANDON|1|3|146",
        "1700000206|1700000003.2|support|1001|COMPLETEAGENT|143|60|2",
        "1700000207|1700000207.5|support|NONE|ENTERQUEUE||5550005|1",
        "1700000211|NONE|support|1001|REMOVEMEMBER|",
        "1700000211|NONE|sales|1001|REMOVEMEMBER|",
        "1700000211|1700000005.4|sales|NONE|EXITEMPTY|1|1|206",
        "1700000230|1700000207.5|support|NONE|EXITWITHKEY|9|1|1|23",
        "1700000300|1700000300.6|support|NONE|ENTERQUEUE||5550006|1",
        "1700000600|1700000300.6|support|NONE|EXITWITHTIMEOUT|1|1|300",
    ]
