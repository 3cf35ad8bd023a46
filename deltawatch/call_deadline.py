"""A hard deadline for a Kafka call that may ignore its own timeout.

Why: librdkafka's ``send_offsets_to_transaction()`` can block for ever when the group
coordinator went away during the call (confluentinc/librdkafka#5456: the coordinator
request's timeout is never checked). Kafka broker restarts in the middle of a batch left the
differ and the notifier blocked there for good (found by the reliability suite): nothing
consumed or committed again, no delta and no callback any more. No in-process recovery is
safe while the C call still holds the producer, so past the deadline the process exits 1,
the same path as a fatal Kafka error: the restart (same ``transactional.id``) aborts the
open transaction, restores its state from Kafka and re-processes the batch — exactly once
holds.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

EXIT_CODE = 1


@contextlib.contextmanager
def call_deadline(seconds: float, call: str, log: Any) -> Iterator[None]:
    timer = threading.Timer(seconds, _give_up, args=(seconds, call, log))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _give_up(seconds: float, call: str, log: Any) -> None:
    log.error(
        "Kafka call stuck past its deadline; exiting so a restart recovers",
        call=call,
        seconds=seconds,
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_CODE)
