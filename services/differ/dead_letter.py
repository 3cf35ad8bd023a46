"""Dead letters of the differ: input records that can never be applied.

A poison record must not stop the partition behind it (CONTRACT: bad input never stops a
worker), and it must not vanish either: it is written, inside the same transaction that
commits the offset past it, to the differ's DLQ topic with enough to find and replay it —
where it came from, why it was refused, and the raw bytes. CONTRACT §3 names only the
notifier's DLQ; the differ's is ``DELTAWATCH_DIFFER_DLQ_TOPIC`` (``deltawatch.differ-dlq``).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime

from confluent_kafka import Message

from deltawatch.cloud_events import KafkaRecord, rfc3339_ms


def dead_letter_value(
    *,
    reason: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    refused_at: datetime,
) -> bytes:
    """The DLQ record value: JSON with the reason, the origin and the raw bytes (base64)."""
    document = {
        "reason": reason,
        "topic": topic,
        "partition": partition,
        "offset": offset,
        "key": base64.b64encode(key).decode() if key is not None else None,
        "value": base64.b64encode(value).decode() if value is not None else None,
        "refused-at": rfc3339_ms(refused_at),
    }
    return json.dumps(document, separators=(",", ":")).encode()


def dead_letter_record(message: Message, reason: str, refused_at: datetime) -> KafkaRecord:
    """The DLQ record of ``message``, keyed like it, with its partition in a header."""
    partition = message.partition()
    partition = -1 if partition is None else partition
    offset = message.offset()
    value = dead_letter_value(
        reason=reason,
        topic=message.topic() or "",
        partition=partition,
        offset=-1 if offset is None else offset,
        key=message.key(),
        value=message.value(),
        refused_at=refused_at,
    )
    return KafkaRecord(message.key(), value, [("partition", str(partition).encode())])
