"""Where a partition snapshot keeps the objects themselves, apart from what it diffs with.

Deciding *whether* a resource changed needs only its uid and digests, a few dozen bytes; the
object's JSON (3-6 KB for a real Pod) is needed only to report it: when it is deleted (its
last known state) and to persist it in the changelog. So a :class:`PartitionSnapshot
<services.differ.snapshot.PartitionSnapshot>` keeps keys and digests in memory and the bodies
behind this small interface: in a dict (:class:`MemoryBodies`, the default) or on local disk
(:class:`services.differ.local_state.PartitionState`, RocksDB, when
``DELTAWATCH_DIFFER_STATE_DIR`` is set), which bounds the differ's memory by its keys, not its
objects.

Besides the bodies, an implementation may keep a copy of the partition's changelog (the
``record`` calls, object bodies stripped) and the input offset it is current with (``flush``):
what lets a restarted differ restore from local disk instead of re-reading the changelog.
"""

from __future__ import annotations

from typing import Protocol

from deltawatch.resource_identity import ResourceKey

ResourceSlot = tuple[str, ResourceKey]
"""(instance id, resource key): one tracked resource of a partition."""


class ObjectBodies(Protocol):
    def body(self, slot: ResourceSlot) -> bytes:
        """The stored object of ``slot`` (compact JSON); KeyError when there is none."""
        ...

    def put_body(self, slot: ResourceSlot, body: bytes) -> None: ...

    def put_record_body(self, slot: ResourceSlot, value: bytes, start: int) -> None:
        """Keep ``value[start:]`` as the body of ``slot``: the object of a restored changelog
        record (:mod:`services.differ.changelog_codec`), handed over in the record's value so
        that a restore need not copy each object out of it."""
        ...

    def delete_body(self, slot: ResourceSlot) -> None: ...

    def record(self, key: bytes, value: bytes | None) -> None:
        """Mirror one changelog record (written or restored) in the local copy, if any."""
        ...

    def flush(self, input_offset: int | None) -> None:
        """Make everything written since the last flush durable together, as the state that
        goes with the committed input ``offset`` (the next offset to consume)."""
        ...


class MemoryBodies:
    """Bodies in a dict: nothing survives the process, nothing to flush.

    A restored body stays inside its changelog record's value (a header line, then the object),
    which the restore holds anyway: no 3-6 KB copy per record, for ~100 bytes of header kept
    per restored resource. It is cut out only when read, which only a deletion does.
    """

    __slots__ = ("_bodies", "_in_records")

    def __init__(self) -> None:
        self._bodies: dict[ResourceSlot, bytes] = {}
        self._in_records: dict[ResourceSlot, tuple[bytes, int]] = {}

    def body(self, slot: ResourceSlot) -> bytes:
        body = self._bodies.get(slot)
        if body is not None:
            return body
        value, start = self._in_records[slot]
        return value[start:]

    def put_body(self, slot: ResourceSlot, body: bytes) -> None:
        self._bodies[slot] = body
        if self._in_records:
            self._in_records.pop(slot, None)

    def put_record_body(self, slot: ResourceSlot, value: bytes, start: int) -> None:
        self._in_records[slot] = (value, start)
        if self._bodies:
            self._bodies.pop(slot, None)

    def delete_body(self, slot: ResourceSlot) -> None:
        self._bodies.pop(slot, None)
        self._in_records.pop(slot, None)

    def record(self, key: bytes, value: bytes | None) -> None:
        pass

    def flush(self, input_offset: int | None) -> None:
        pass

    def __eq__(self, other: object) -> bool:
        """Same objects (tests compare a restored snapshot with the live one)."""
        return isinstance(other, MemoryBodies) and self._all() == other._all()

    def _all(self) -> dict[ResourceSlot, bytes]:
        return {slot: self.body(slot) for slot in (*self._bodies, *self._in_records)}

    __hash__ = None  # type: ignore[assignment]
