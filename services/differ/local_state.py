"""The differ's state on local disk: object bodies out of memory, and a restart without a restore.

With ``DELTAWATCH_DIFFER_STATE_DIR`` set, each differ process keeps one RocksDB (``rocksdict``,
what Kafka Streams and Quix Streams use for the same job) at ``<dir>/<member id>``, with a
column family per input partition holding:

* ``b`` + slot → the object of each tracked resource: memory holds only keys and digests
  (:mod:`services.differ.object_bodies`), so a million Pods fit in a few hundred MB;
* ``m`` + changelog key → the partition's changelog, compacted, resource records without their
  object (:mod:`services.differ.changelog_codec`): a copy to rebuild the in-memory snapshot
  from without reading the object bodies;
* ``o`` → the consumer group's input offset this state goes with (Kafka Streams' checkpoint).

Nothing is written here before the Kafka transaction that carries the same state committed,
and the offset is written last, in the same write as the batch's last changes. So the copy is
trusted exactly when its offset equals the group's committed offset for the partition: then
no other differ processed the partition since, and no committed batch is missing. Anything
else (a crash between the commit and the local write, the partition processed elsewhere
meanwhile, an empty or foreign directory) falls back to a restore from the changelog, which
rewrites the column family from scratch. That check makes the write-ahead log a matter of
speed, not of safety: a restore from the changelog writes without it and flushes at its end.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import orjson
from rocksdict import ColumnFamily, DBCompressionType, Options, Rdict, WriteBatch, WriteOptions

from services.differ.changelog_codec import without_object
from services.differ.object_bodies import ResourceSlot

_BODY = b"b"
_MIRROR = b"m"
_OFFSET = b"o"
_IDENTITY = b"identity"  # in the default column family
# Pending writes go to RocksDB in batches of this many operations: a restore of a million
# objects must not hold them all in one write batch. Safe because the offset is written last.
_WRITE_EVERY = 5000


class LocalStateError(Exception):
    """The state directory cannot be opened, read or written (full disk, permissions, a
    corrupt database): the differ stops with this one line rather than go on with state it
    cannot keep. Its restart restores from the changelog if the directory is usable again."""


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.create_missing_column_families(True)
    # Kubernetes objects are repetitive JSON: lz4 halves them at little CPU.
    options.set_compression_type(DBCompressionType.lz4())
    return options


def _slot_key(slot: ResourceSlot) -> bytes:
    return _BODY + orjson.dumps((slot[0], *slot[1]))


class LocalStateDb:
    """One process's RocksDB; a :class:`PartitionState` per input partition.

    ``identity`` names what the state belongs to (consumer group, input and changelog topics
    with their topic ids): an offset only means something for the same group reading the same
    topic. A directory holding another identity's state (topics renamed, deleted and
    recreated, another group) is emptied at open, so its offsets can never match by chance.
    """

    def __init__(self, path: Path, identity: dict[str, str] | None = None) -> None:
        self.path = path
        self._options = _options()
        try:
            path.mkdir(parents=True, exist_ok=True)
            existing = (path / "CURRENT").exists()
            families = Rdict.list_cf(str(path), self._options) if existing else []
            self._db = Rdict(
                str(path),
                self._options,
                column_families={name: self._options for name in families if name != "default"},
            )
        except Exception as exc:  # rocksdict raises bare Exceptions
            raise LocalStateError(f"cannot open local state at {path}: {exc}") from exc
        self._logged = WriteOptions()
        self._unlogged = WriteOptions()
        # An attribute at run time, whatever rocksdict's stub (a method) says.
        setattr(self._unlogged, "disable_wal", True)  # noqa: B010
        if identity is not None:
            self._claim(orjson.dumps(identity, option=orjson.OPT_SORT_KEYS))

    def _claim(self, identity: bytes) -> None:
        """Forget every partition's state unless it was kept for this same identity."""
        try:
            if self._db.get(_IDENTITY) == identity:
                return
            for name in Rdict.list_cf(str(self.path), self._options):
                if name != "default":
                    self._db.drop_column_family(name)
            self._db.put(_IDENTITY, identity)
        except Exception as exc:
            raise LocalStateError(f"cannot reset local state at {self.path}: {exc}") from exc

    def partition(self, partition: int) -> PartitionState:
        """The partition's state as stored (empty if never stored)."""
        name = f"p{partition}"
        try:
            family = self._db.get_column_family(name)
        except Exception:  # rocksdict raises a bare Exception for an unknown column family
            family = self._create(name)
        return PartitionState(self, name, family)

    def fresh_partition(self, partition: int) -> PartitionState:
        """The partition's state, emptied: to be rewritten by a restore from the changelog."""
        name = f"p{partition}"
        with contextlib.suppress(Exception):  # rocksdict's error when it is not there
            self._db.drop_column_family(name)
        return PartitionState(self, name, self._create(name), bulk=True)

    def stored_partitions(self) -> list[int]:
        """The partitions that have state here, owned or not, in order."""
        try:
            names = Rdict.list_cf(str(self.path), self._options)
        except Exception as exc:
            raise LocalStateError(f"cannot list local state at {self.path}: {exc}") from exc
        return sorted(int(n[1:]) for n in names if n.startswith("p") and n[1:].isdigit())

    def drop_partition(self, partition: int) -> None:
        """Delete a partition's state (not owned for a while: services.differ.unowned_state)."""
        try:
            self._db.drop_column_family(f"p{partition}")
        except Exception as exc:
            message = f"cannot drop p{partition} from local state at {self.path}: {exc}"
            raise LocalStateError(message) from exc

    def _create(self, name: str) -> Rdict:
        try:
            return self._db.create_column_family(name, self._options)
        except Exception as exc:
            message = f"cannot create {name} in local state at {self.path}: {exc}"
            raise LocalStateError(message) from exc

    def handle(self, name: str) -> ColumnFamily:
        return self._db.get_column_family_handle(name)

    def write(self, batch: WriteBatch, logged: bool) -> None:
        try:
            self._db.write(batch, self._logged if logged else self._unlogged)
        except Exception as exc:
            raise LocalStateError(f"cannot write local state at {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()


class PartitionState:
    """One partition's bodies, changelog copy and checkpoint offset (an ``ObjectBodies``)."""

    def __init__(self, db: LocalStateDb, name: str, family: Rdict, *, bulk: bool = False) -> None:
        self._db = db
        self._family = family
        self._handle = db.handle(name)
        self._bulk = bulk
        """Being written by a restore: no write-ahead log, one flush at the end."""
        self._batch = self._new_batch()

    def _new_batch(self) -> WriteBatch:
        batch = WriteBatch(raw_mode=True)
        batch.set_default_column_family(self._handle)
        return batch

    # -- ObjectBodies ------------------------------------------------------------------------

    def body(self, slot: ResourceSlot) -> bytes:
        try:
            value = self._family.get(_slot_key(slot))
        except Exception as exc:
            raise LocalStateError(f"cannot read local state: {exc}") from exc
        if not isinstance(value, bytes):  # None: not there (raw mode stores only bytes)
            raise KeyError(slot)
        return value

    def put_body(self, slot: ResourceSlot, body: bytes) -> None:
        self._batch.put(_slot_key(slot), body)
        self._write_when_full()

    def put_record_body(self, slot: ResourceSlot, value: bytes, start: int) -> None:
        self._batch.put(_slot_key(slot), value[start:])
        self._write_when_full()

    def delete_body(self, slot: ResourceSlot) -> None:
        self._batch.delete(_slot_key(slot))
        self._write_when_full()

    def record(self, key: bytes, value: bytes | None) -> None:
        if value is None:
            self._batch.delete(_MIRROR + key)
        else:
            self._batch.put(_MIRROR + key, without_object(key, value))
        self._write_when_full()

    def flush(self, input_offset: int | None) -> None:
        if input_offset is not None and input_offset >= 0:
            if self._bulk:
                # Everything before the offset on disk first: the offset must never outlive it.
                self._db.write(self._batch, logged=False)
                self._batch = self._new_batch()
                try:
                    self._family.flush()
                except Exception as exc:
                    raise LocalStateError(f"cannot flush local state: {exc}") from exc
                self._bulk = False
            self._batch.put(_OFFSET, str(input_offset).encode())
        if self._batch.len():
            self._db.write(self._batch, logged=not self._bulk)
            self._batch = self._new_batch()

    def _write_when_full(self) -> None:
        if self._batch.len() >= _WRITE_EVERY:
            self._db.write(self._batch, logged=not self._bulk)
            self._batch = self._new_batch()

    # -- restore -----------------------------------------------------------------------------

    def input_offset(self) -> int | None:
        """The committed input offset this state goes with, if it was ever checkpointed."""
        value = self._family.get(_OFFSET)
        return int(value) if isinstance(value, bytes) else None

    def changelog_records(self) -> Iterator[tuple[bytes, bytes]]:
        """The stored changelog copy (resource records without their object), in key order."""
        for key, value in self._family.items(from_key=_MIRROR):
            assert isinstance(key, bytes)  # raw mode: bytes only
            assert isinstance(value, bytes)
            if not key.startswith(_MIRROR):
                break
            yield key[len(_MIRROR) :], value
