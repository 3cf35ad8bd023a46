"""Differ benchmark (run on demand): resident memory per tracked resource, and local restore.

    .venv/bin/python -m bench.differ_memory [--resources 1000000] [--in-memory 100000]
                                            [--state-dir DIR]

Each figure comes from a fresh Python process (``/proc/self/status``: VmRSS after building,
VmHWM the peak), fed the way the differ's loop feeds its snapshot, without Kafka: realistic
Pods (:mod:`bench.pod_shape`: a kube-apiserver response, managedFields stripped, ~5.9 KB of
JSON each) as ADDED resource records over resources/10 instances, parsed by
``parse_resource_event``, diffed by ``apply_batch`` in batches of 500, the batch's changelog
records encoded, ``commit_to`` the snapshot and, with local state, mirrored and flushed with
the batch's input offset, exactly as ``DifferLoop._process`` does after a commit.

1. ``disk``: ``DELTAWATCH_DIFFER_STATE_DIR`` set: keys and digests in memory, objects in
   RocksDB (``--resources``; target: 1 M Pods in ≤ 1 GiB resident).
2. ``restore``: a new process restores that partition from the local state
   (``restore_from_local``): what a restarted differ whose state is current does instead of
   reading the changelog. Time and resident memory after.
3. ``memory``: no state directory, objects in memory (``--in-memory`` resources, the default
   and the only mode before this bench): the comparison.

The librdkafka clients and HTTP server of a real differ add ~40-60 MB to these figures.

Figures (2 shared CPUs, load ~1.5; commit "bench/differ_memory.py"; 1 M Pods = 5.9 GB of
object JSON; "before" is the only mode before local state, objects in memory, run at 100 k
resources and extrapolated linearly, since 1 M would need ~7 GiB):

==========================  ==========================  ==========================
                            before: objects in memory   after: DELTAWATCH_DIFFER_STATE_DIR
==========================  ==========================  ==========================
resident per resource       7,231 B                     801 B
1 M Pods resident           ~6.8 GiB (extrapolated)     816 MiB (peak 816 MiB)
restart with 1 M Pods       changelog read (5.9 GB)     local restore 8.2 s, 707 MiB
                                                        (4.5-4.7 s, 644 MiB since the
                                                        collector is paused: see below)
==========================  ==========================  ==========================

Building 1 M took 377 s here, most of it this bench making and parsing the Pods. The 801 B are
~500 B of keys and digests per resource (name, namespace, uid strings; two digests; the key
tuple and dict slots) plus what the allocator keeps of the freed batches and RocksDB's
memtables, table readers and block cache; a local restore, which allocates no batches, ends
at 609 B per resource.

7 Dec 2026 evening, the same 1 M-Pod state directory restored twice by each side, alternately:
7.8-8.0 s before, 4.5-4.7 s after the restore began to build the snapshot with the garbage
collector paused, then frozen (``services.differ.restore.long_lived_state``); resident after
the restore 644 MiB both. The build now takes 368 s, 745 MiB resident (peak 752).

Full garbage collections while building (printed since then; the build now decodes each batch
lazily, as the loop does: a list of 500 parsed Pods had been promoted to the oldest generation
and set off a full collection every few batches, which the loop never did). 300 k Pods into
local state, one run each: without freezing (``--no-freeze``) 22 full collections, the longest
408 ms, 4.1 s in all; with the loop's ``WriteCountFreeze`` (a collection and
:func:`gc.freeze` every 100 k resource writes) 31, the longest 147 ms, 2.3 s in all. In a
scratch run of 300 k Pods then 100 k modifications, the modifications' longest full collection
went from 420 to 84 ms; after 200 k Pods and 200 k modifications with freezes,
``gc.unfreeze(); gc.collect()`` found 0 unreachable objects: nothing frozen had become cyclic
garbage.
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench.pod_shape import pod_event, realistic_pod
from services.differ.changelog_codec import encode_outcome
from services.differ.local_state import LocalStateDb
from services.differ.long_lived_heap import WriteCountFreeze
from services.differ.object_bodies import MemoryBodies, ObjectBodies
from services.differ.resource_diff import apply_batch
from services.differ.resource_event import ResourceEvent, parse_resource_event
from services.differ.restore import restore_from_local
from services.differ.snapshot import PartitionSnapshot

BATCH = 500
PARTITION = 0


def proc_status() -> dict[str, int]:
    """VmRSS and VmHWM in bytes."""
    found: dict[str, int] = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            found[name] = int(value.split()[0]) * 1024
    return found


def event(index: int, instances: int, now: datetime) -> ResourceEvent:
    instance = f"inst-{index % instances}"
    obj = realistic_pod(index, instance=instance)
    return parse_resource_event(pod_event("ADDED", instance, obj, orjson.dumps(obj).decode(), now))


class FullCollections:
    """The garbage collector's full (generation 2) collections while it is installed."""

    def __init__(self) -> None:
        self.pauses_ms: list[float] = []
        self._started = 0.0
        gc.callbacks.append(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif info["generation"] == 2:
            self.pauses_ms.append((time.perf_counter() - self._started) * 1000)

    def figures(self) -> dict[str, float]:
        gc.callbacks.remove(self._observe)
        pauses = self.pauses_ms
        return {
            "gc_full": len(pauses),
            "gc_max_ms": max(pauses, default=0.0),
            "gc_total_ms": sum(pauses),
        }


def build(resources: int, bodies: ObjectBodies, freeze: bool) -> dict[str, float]:
    """Feed ``resources`` Pods into one partition's snapshot as the loop does: each batch's
    events decoded lazily, its outcome committed, the heap frozen every so many writes."""
    instances = max(1, resources // 10)
    baseline = proc_status()["VmRSS"]
    snapshot = PartitionSnapshot(bodies=bodies)
    heap_freeze = WriteCountFreeze() if freeze else None
    collections = FullCollections()
    now = datetime.now(UTC)
    started = time.monotonic()
    for first in range(0, resources, BATCH):
        last = min(first + BATCH, resources)
        outcome = apply_batch(snapshot, (event(i, instances, now) for i in range(first, last)))
        outcome.commit_to(snapshot, encode_outcome(outcome), last)
        if heap_freeze is not None:
            heap_freeze.written(len(outcome.resource_writes))
    seconds = time.monotonic() - started
    del outcome
    figures = collections.figures()
    gc.collect()
    return {
        "resources": snapshot.resource_count(),
        "seconds": seconds,
        "rss_before": baseline,
        **figures,
        **proc_status(),
    }


def restore(state_dir: Path) -> dict[str, float]:
    database = LocalStateDb(state_dir)
    before = proc_status()["VmRSS"]
    started = time.monotonic()
    result = restore_from_local(database.partition(PARTITION), PARTITION, "bench")
    seconds = time.monotonic() - started
    gc.collect()
    return {
        "resources": result.snapshot.resource_count(),
        "seconds": seconds,
        "rss_before": before,
        **proc_status(),
    }


def child(mode: str, resources: int, state_dir: Path, freeze: bool) -> None:
    """One measurement in this (fresh) process; prints one JSON line."""
    if mode == "memory":
        figures = build(resources, MemoryBodies(), freeze)
    elif mode == "disk":
        database = LocalStateDb(state_dir)
        figures = build(resources, database.partition(PARTITION), freeze)
        database.close()
    else:
        figures = restore(state_dir)
    print(json.dumps(figures))


def measure(mode: str, resources: int, state_dir: Path, freeze: bool) -> dict[str, float]:
    argv = [sys.executable, "-m", "bench.differ_memory", "--child", mode]
    argv += ["--resources", str(resources), "--state-dir", str(state_dir)]
    argv += [] if freeze else ["--no-freeze"]
    output = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    figures: dict[str, float] = json.loads(output.strip().splitlines()[-1])
    return figures


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def report(mode: str, figures: dict[str, float]) -> None:
    resources = figures["resources"]
    print(
        f"{mode:8} {resources:>9,.0f} resources in {figures['seconds']:6.1f} s: "
        f"resident {mib(figures['VmRSS'])}, peak {mib(figures['VmHWM'])}; "
        f"{mib(figures['rss_before'])} before: "
        f"{(figures['VmRSS'] - figures['rss_before']) / resources:,.0f} B/resource"
    )
    if "gc_full" in figures:
        print(
            f"{'':8} {figures['gc_full']:.0f} full garbage collections while building, "
            f"longest {figures['gc_max_ms']:.0f} ms, {figures['gc_total_ms']:.0f} ms in all"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--resources", type=int, default=1_000_000)
    parser.add_argument("--in-memory", type=int, default=100_000)
    parser.add_argument("--state-dir", type=Path)
    parser.add_argument("--child", choices=("memory", "disk", "restore"))
    parser.add_argument(
        "--no-freeze", action="store_true", help="build without the loop's WriteCountFreeze"
    )
    args = parser.parse_args()
    if args.child:
        child(args.child, args.resources, args.state_dir, not args.no_freeze)
        return
    with tempfile.TemporaryDirectory(prefix="differ-memory-") as scratch:
        state_dir = args.state_dir or Path(scratch) / "state"
        freeze = not args.no_freeze
        report("memory", measure("memory", args.in_memory, state_dir, freeze))
        report("disk", measure("disk", args.resources, state_dir, freeze))
        restored = measure("restore", args.resources, state_dir, freeze)
        report("restore", restored)


if __name__ == "__main__":
    main()
