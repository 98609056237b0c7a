"""``acd loopback``: an end-to-end call-quality tester built on pjsua2 (an independent SIP stack).

It places calls to any SIP URI (the echo test, a queue answered by robot agents, another
server), plays reference speech, records what comes back and measures per call the round
trip, PESQ beside the codec's own ceiling, setup time, post-dial delay and an estimate of
lost or concealed audio; optionally through a relay that drops and delays our RTP, and for
many calls at once over several pjsua2 worker processes.

* :mod:`acd.loopback.cli` — the ``acd loopback`` command;
* :mod:`acd.loopback.runner` — workers, scheduling, summary and verdict;
* :mod:`acd.loopback.worker` — the pjsua2 worker process (up to 4 calls);
* :mod:`acd.loopback.measure` — reference speech, alignment, PESQ, ceiling, lost audio;
* :mod:`acd.loopback.relay` — SIP + RTP relay for loss and jitter;
* :mod:`acd.loopback.report` — the self-contained HTML report.

Importing this package does not import pjsua2 (only the worker process does).
"""

from __future__ import annotations

__all__ = ["LoopbackOptions", "Impairment", "Thresholds", "run_loopback"]


def __getattr__(name: str) -> object:
    # lazy: ``acd --help`` must not pay for numpy and friends
    if name in ("LoopbackOptions", "Thresholds", "run_loopback"):
        from acd.loopback import runner

        return getattr(runner, name)
    if name == "Impairment":
        from acd.loopback.relay import Impairment

        return Impairment
    raise AttributeError(name)
