"""Record factories shared by the store tests (plain values, no engine needed)."""

from __future__ import annotations

from typing import Any

from acd.engine.records import AgentStateRecord, CallRecord, OfferRecord

EPOCH = 1_700_000_000.0


def cdr(i: int = 1, **kw: Any) -> CallRecord:
    base: dict[str, Any] = dict(
        call_id=f"{EPOCH + i:.0f}.{i}", caller=f"55500{i:02d}", queue="support",
        first_queue="support", entered_at=EPOCH + i, answered_at=EPOCH + i + 12.25,
        ended_at=EPOCH + i + 100.5, agent="alice", wait_s=12.25, talk_s=88.25,
        outcome="answered", reason="caller", ewt_at_entry_s=30.0, ewt_announced=True,
        origposition=2, priority=0)
    base.update(kw)
    return CallRecord(**base)


def offer(i: int = 1, **kw: Any) -> OfferRecord:
    base: dict[str, Any] = dict(agent="alice", call_id=f"{EPOCH + i:.0f}.{i}", queue="support",
                                offered_at=EPOCH + i + 2, ended_at=EPOCH + i + 9.5,
                                outcome="no-answer", ring_s=7.5)
    base.update(kw)
    return OfferRecord(**base)


def state(t: float, agent: str, frm: str, to: str, reason: str = "", **kw: Any) -> AgentStateRecord:
    return AgentStateRecord(EPOCH + t, agent, frm, to, reason, kw.pop("duration_s", 1.0), **kw)
