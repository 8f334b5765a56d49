"""Alias moves, serialized by compare-and-set on the object store (local files or S3).

Each alias of a pipeline has a log of moves numbered 1, 2, 3, ...:
    <pipeline>/alias_history/<alias>/<sequence:010d>.json   one move, never rewritten
    <pipeline>/aliases/<alias>.json                         a copy of the newest move (a hint)
A move is committed by creating the next number with a conditional create
(ObjectStore.put_if_absent). Two writers that read the same newest move both try
to create the same number and exactly one succeeds; the other reads again and
retries. So the log is append-only, gapless, and every move's `previous` is the
version the move before it set. The pointer is written after the move; a reader
starts from it and checks forward for newer numbers, so a pointer that a killed
or slower writer left behind is never believed.

Rollbacks stack (v1 -> v2 -> v3, then two rollbacks, ends at v1). Each move links
to the move a rollback from it returns to (`rollback_to`), so a rollback reads one
move, not the whole log.

Registries written before the numbering kept moves as
`alias_history/<time>-<alias>.json` and a pointer without a sequence; they still
read back, first; the first numbered move continues from that pointer, and a
rollback that reaches back before the numbering replays the whole log.
"""

from __future__ import annotations

import heapq
import json
import random
import time
from collections.abc import Callable
from dataclasses import replace

from ml_pipelines.core.errors import RegistryError
from ml_pipelines.core.records import AliasMove
from ml_pipelines.core.storage import ObjectNotFound, ObjectStore

MOVE_ATTEMPTS = 200  # compare-and-set rounds before a move gives up under contention
BEFORE_NUMBERING = 0  # the sequence of the state a pre-numbering pointer describes
# the move to make, given the newest move (None when there is none)
Decide = Callable[[AliasMove | None], AliasMove]


def _history_dir(pipeline: str) -> str:
    return f"{pipeline}/alias_history/"


def _entry_key(pipeline: str, alias: str, sequence: int) -> str:
    return f"{pipeline}/alias_history/{alias}/{sequence:010d}.json"


def _pointer_key(pipeline: str, alias: str) -> str:
    return f"{pipeline}/aliases/{alias}.json"


def _read_entry(store: ObjectStore, pipeline: str, alias: str, sequence: int) -> AliasMove | None:
    try:
        return AliasMove.from_json(store.get(_entry_key(pipeline, alias, sequence)))
    except ObjectNotFound:
        return None


def _from_pointer(store: ObjectStore, pipeline: str, alias: str) -> AliasMove | None:
    """The pointer's move; a pre-numbering pointer stands for the state before move 1."""
    try:
        raw = json.loads(store.get(_pointer_key(pipeline, alias)))
    except ObjectNotFound:
        return None
    if raw.get("sequence") is not None:
        return AliasMove.from_dict(raw)
    # written before numbering: the move itself, or {"version": null} when the alias was cleared
    return AliasMove(pipeline, alias, raw.get("version"), None, raw.get("moved_at", ""), "", "",
                     sequence=BEFORE_NUMBERING, rollback_to=BEFORE_NUMBERING)


def newest(store: ObjectStore, pipeline: str, alias: str) -> AliasMove | None:
    """The newest committed move of alias: from the pointer, checked forward one number at a time."""
    current = _from_pointer(store, pipeline, alias)
    sequence = (current.sequence or 0) if current is not None else 0
    while (later := _read_entry(store, pipeline, alias, sequence + 1)) is not None:
        current, sequence = later, sequence + 1
    return current


def current_version(store: ObjectStore, pipeline: str, alias: str) -> str | None:
    move = newest(store, pipeline, alias)
    return move.version if move is not None else None


def _legacy_moves(store: ObjectStore, pipeline: str) -> list[AliasMove]:
    """Moves logged before numbering: `alias_history/<time>-<alias>.json`, in time order."""
    keys = [k for k in store.list(_history_dir(pipeline)) if k.count("/") == 2]
    return [AliasMove.from_json(store.get(k)) for k in keys]


def moves(store: ObjectStore, pipeline: str, alias: str, *, through: AliasMove | None = None) -> list[AliasMove]:
    """Every move of one alias, oldest first; with `through`, only the moves up to that one."""
    legacy = [m for m in _legacy_moves(store, pipeline) if m.alias == alias]
    last = through.sequence if through is not None else None
    numbered = [AliasMove.from_json(store.get(k)) for k in store.list(f"{_history_dir(pipeline)}{alias}/")]
    numbered = [m for m in numbered if last is None or (m.sequence or 0) <= last]
    return legacy + sorted(numbered, key=lambda m: m.sequence or 0)


def all_moves(store: ObjectStore, pipeline: str, aliases: tuple[str, ...]) -> list[AliasMove]:
    """Every move of every alias: each alias in its own order, the aliases interleaved by time."""
    per_alias = [moves(store, pipeline, alias) for alias in aliases]
    return list(heapq.merge(*per_alias, key=lambda m: m.moved_at))


def _link_for_new_top(head: AliasMove | None) -> int | None:
    """rollback_to of a move that is not a rollback: back to the newest version that was set."""
    if head is None:
        return None
    return head.sequence if head.version is not None else head.rollback_to


def rollback_target(store: ObjectStore, pipeline: str, alias: str, head: AliasMove) -> tuple[str, int | None]:
    """The version a rollback from head returns to, and the rollback_to of that rollback move.
    A RegistryError when there is nothing to roll back to."""
    if head.version is None:
        raise RegistryError(f"{pipeline} has no {alias} to roll back")
    if head.rollback_to is None:
        raise RegistryError(f"{pipeline}: {alias} {head.version} has no earlier {alias} to roll back to")
    if head.rollback_to != BEFORE_NUMBERING:
        target = _read_entry(store, pipeline, alias, head.rollback_to)
        if target is None or target.version is None:
            raise RegistryError(f"{pipeline}: {alias} move {head.rollback_to} is missing; cannot roll back")
        return target.version, target.rollback_to
    # back before the numbering: replay the whole log, as rollbacks were computed then
    promoted: list[str] = []  # versions in promotion order, minus those rolled back
    for move in moves(store, pipeline, alias, through=head):
        if move.rollback:
            if promoted:
                promoted.pop()
        elif move.version is not None:
            promoted.append(move.version)
    if len(promoted) < 2:
        raise RegistryError(f"{pipeline}: {alias} {head.version} has no earlier {alias} to roll back to")
    return promoted[-2], BEFORE_NUMBERING if len(promoted) > 2 else None


def append(store: ObjectStore, pipeline: str, alias: str, decide: Decide) -> AliasMove:
    """Commit the move decide() makes from the newest move, retrying when another writer got there first.

    decide gets the newest move and returns the move to commit; `sequence` and
    `previous` (and, unless it is a rollback, `rollback_to`) are set here. It may
    raise (a RegistryError) to refuse the move; it is called again on every retry."""
    for attempt in range(MOVE_ATTEMPTS):
        head = newest(store, pipeline, alias)
        sequence = (head.sequence or 0) + 1 if head is not None else 1
        move = replace(decide(head), sequence=sequence, previous=head.version if head is not None else None)
        if not move.rollback:
            move = replace(move, rollback_to=_link_for_new_top(head))
        if store.put_if_absent(_entry_key(pipeline, alias, sequence), move.to_json()):
            store.put(_pointer_key(pipeline, alias), move.to_json())
            return move
        time.sleep(random.uniform(0.001, 0.01) * min(attempt + 1, 10))  # another writer won this number
    raise RegistryError(
        f"{pipeline}: {alias} could not be moved: {MOVE_ATTEMPTS} other moves won the race first; try again"
    )
