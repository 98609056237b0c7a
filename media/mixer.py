"""N-party conference mixer with per-participant mix-minus, on a 20 ms media clock.

Sans-IO: the media loop calls :meth:`Mixer.put` once per participant with the frame it
received this tick (a participant with no frame is silent for the tick), then
:meth:`Mixer.mix`, which returns what each participant must hear and starts the next tick.

Each participant has a role, the base for supervisor features and three-way calls:

===========  =========================================  ==================================
role         hears                                      heard by
===========  =========================================  ==================================
``TALK``     every talker but itself, and whispers to   every other participant
             it (caller, agent, third party)
``LISTEN``   every talker and every whisper (monitor)   nobody
``WHISPER``  every talker (coaching supervisor)         its ``whisper_to`` target and the
                                                        monitors only
===========  =========================================  ==================================

Barge-in is ``set_role(supervisor, Role.TALK)``. Mixing is mix-minus, O(N) per tick rather
than O(N²): the talkers' sum is computed once and each talker's own (gained) input is
subtracted from it. Samples are accumulated in int32 and saturated to int16, so a loud sum
clips instead of wrapping around. ``gain_db`` scales what the others hear of a participant;
``muted`` silences it for everyone.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Hashable
from dataclasses import dataclass, replace

import numpy as np

from media.errors import MediaError

__all__ = ["Mixer", "Role", "Participant", "benchmark"]

log = logging.getLogger(__name__)

MAX_GAIN_DB = 20.0  # keeps int32 accumulation far from overflow (32767·10·N < 2³¹ for N < 6500)


class Role(enum.Enum):
    TALK = "talk"
    LISTEN = "listen"
    WHISPER = "whisper"


@dataclass(frozen=True, slots=True)
class Participant:
    id: Hashable
    role: Role = Role.TALK
    whisper_to: Hashable | None = None
    gain_db: float = 0.0
    muted: bool = False


class Mixer:
    """Mix-minus for the participants present; ``mix()`` once per ``frame_ms`` tick."""

    def __init__(self, rate: int = 8000, frame_ms: int = 20) -> None:
        self.rate = rate
        self.frame_size = rate * frame_ms // 1000
        self.tick = 0
        self._members: dict[Hashable, Participant] = {}
        self._ids: list[Hashable] = []
        self._index: dict[Hashable, int] = {}
        self._in = np.zeros((0, self.frame_size), dtype=np.int16)
        self._have = np.zeros(0, dtype=bool)
        self._layout()

    # ------------------------------------------------------------------ membership

    def add(self, pid: Hashable, role: Role = Role.TALK, *, whisper_to: Hashable | None = None,
            gain_db: float = 0.0, muted: bool = False) -> None:
        if pid in self._members:
            raise MediaError(f"mixer: participant {pid!r} is already in")
        p = Participant(pid, role, whisper_to, gain_db, muted)
        self._check(p)
        self._members[pid] = p
        self._layout()

    def remove(self, pid: Hashable) -> None:
        self._get(pid)
        del self._members[pid]
        for other in self._members.values():
            if other.whisper_to == pid:
                log.info("mixer: %r whispers to %r, who left: heard by no one now", other.id, pid)
        self._layout()

    def set_role(self, pid: Hashable, role: Role, *, whisper_to: Hashable | None = None) -> None:
        p = replace(self._get(pid), role=role, whisper_to=whisper_to)
        self._check(p)
        self._members[pid] = p
        self._layout()

    def set_gain(self, pid: Hashable, gain_db: float) -> None:
        p = replace(self._get(pid), gain_db=gain_db)
        self._check(p)
        self._members[pid] = p
        self._layout()

    def set_muted(self, pid: Hashable, muted: bool) -> None:
        self._members[pid] = replace(self._get(pid), muted=bool(muted))
        self._layout()

    @property
    def participants(self) -> tuple[Participant, ...]:
        return tuple(self._members.values())

    def __contains__(self, pid: object) -> bool:
        return pid in self._members

    def __len__(self) -> int:
        return len(self._members)

    def _get(self, pid: Hashable) -> Participant:
        p = self._members.get(pid)
        if p is None:
            raise MediaError(f"mixer: no participant {pid!r}")
        return p

    def _check(self, p: Participant) -> None:
        if not isinstance(p.role, Role):
            raise MediaError(f"mixer: {p.id!r}: unknown role {p.role!r}")
        if p.role is Role.WHISPER:
            if p.whisper_to is None or p.whisper_to not in self._members or p.whisper_to == p.id:
                raise MediaError(f"mixer: {p.id!r} whispers to {p.whisper_to!r}, not a participant")
        elif p.whisper_to is not None:
            raise MediaError(f"mixer: {p.id!r}: whisper_to needs the whisper role")
        if not -96.0 <= p.gain_db <= MAX_GAIN_DB:
            raise MediaError(f"mixer: {p.id!r}: gain {p.gain_db} dB outside -96..{MAX_GAIN_DB:g}")

    def _layout(self) -> None:
        """Rebuild the index arrays after a membership change; frames put this tick are kept."""
        old = {pid: (self._in[i], self._have[i]) for pid, i in self._index.items()}
        self._ids = list(self._members)
        self._index = {pid: i for i, pid in enumerate(self._ids)}
        n = len(self._ids)
        self._in = np.zeros((n, self.frame_size), dtype=np.int16)
        self._have = np.zeros(n, dtype=bool)
        for pid, (frame, have) in old.items():
            if pid in self._index:
                self._in[self._index[pid]] = frame
                self._have[self._index[pid]] = have
        members = [self._members[pid] for pid in self._ids]
        gains = np.array([0.0 if p.muted else 10.0 ** (p.gain_db / 20.0) for p in members],
                         dtype=np.float32)
        self._talk = np.array([p.role is Role.TALK for p in members], dtype=bool)
        self._listen = np.array([p.role is Role.LISTEN for p in members], dtype=bool)
        self._whispers = [(i, self._index.get(p.whisper_to)) for i, p in enumerate(members)
                          if p.role is Role.WHISPER]
        heard = self._talk.copy()
        for i, _ in self._whispers:
            heard[i] = True
        self._gains = gains
        self._unity = bool(np.all(gains[heard] == 1.0))

    # ------------------------------------------------------------------ per tick

    def put(self, pid: Hashable, frame: np.ndarray) -> None:
        """``pid``'s frame for this tick (int16, ``frame_size`` samples), at most once a tick."""
        i = self._index.get(pid)
        if i is None:
            raise MediaError(f"mixer: no participant {pid!r}")
        if self._have[i]:
            raise MediaError(f"mixer: {pid!r} already has a frame for tick {self.tick}")
        a = np.asarray(frame)
        if a.dtype != np.int16 or a.shape != (self.frame_size,):
            raise MediaError(f"mixer: {pid!r}: frame must be int16[{self.frame_size}], "
                             f"got {a.dtype}{list(a.shape)}")
        self._in[i] = a
        self._have[i] = True

    def mix(self) -> dict[Hashable, np.ndarray]:
        """What each participant hears this tick (int16 frames); then the next tick begins."""
        x = self._in.astype(np.int32)
        if not self._unity:
            x = np.rint(x * self._gains[:, None]).astype(np.int32)
        total = x[self._talk].sum(axis=0, dtype=np.int32)
        out = np.broadcast_to(total, x.shape).copy()
        out[self._talk] -= x[self._talk]  # mix-minus: a talker does not hear itself
        for w, target in self._whispers:
            if target is not None:
                out[target] += x[w]
            out[self._listen] += x[w]  # monitors hear the coaching too
        np.clip(out, -32768, 32767, out=out)
        mixed = out.astype(np.int16)
        self._in[self._have] = 0
        self._have[:] = False
        self.tick += 1
        return {pid: mixed[i] for i, pid in enumerate(self._ids)}


def benchmark(participants: int = 10, ticks: int = 500, rate: int = 8000) -> float:
    """Microseconds of :meth:`Mixer.put` + :meth:`Mixer.mix` per participant per tick, for a
    conference of ``participants`` talkers (one gained, one listen-only monitor among them)."""
    mixer = Mixer(rate)
    rng = np.random.default_rng(1)
    frames = rng.integers(-8000, 8000, size=(participants, mixer.frame_size), dtype=np.int16)
    for i in range(participants):
        mixer.add(i, Role.LISTEN if i == participants - 1 and participants > 2 else Role.TALK,
                  gain_db=-3.0 if i == 0 else 0.0)
    start = time.perf_counter()
    for _ in range(ticks):
        for i in range(participants):
            mixer.put(i, frames[i])
        mixer.mix()
    elapsed = time.perf_counter() - start
    return elapsed / ticks / participants * 1e6
