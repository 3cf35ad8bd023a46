"""One-shot of the compose stack: create a sample subscription the way any user would.

It produces a CONTRACT §4 ``create`` command to the commands topic (keyed by instance-id) and
exits; the notifier answers on the results topic. Running it again (``docker compose up``
without ``down -v``) produces a new command, which the notifier rejects as "already exists":
harmless. It runs in the notifier's image, so it reads the same Kafka settings as the workers
(``KAFKA_BOOTSTRAP_SERVERS``, ``DELTAWATCH_KAFKA_CONFIG``, ``DELTAWATCH_COMMANDS_TOPIC``) and
creates the commands topic: it runs before the notifier, which reads the command from there.
"""

from __future__ import annotations

import json
import os
import sys
import time
import uuid

from deltawatch.kafka_clients import make_admin, make_producer
from deltawatch.settings import CommonSettings, SettingsError, load_settings
from deltawatch.topics import contract_topics, ensure_topics


def sample_command() -> dict[str, object]:
    return {
        "command-id": f"sample-{uuid.uuid4().hex[:12]}",
        "action": "create",
        "instance-id": os.environ.get("SAMPLE_INSTANCE_ID", "sample-instance"),
        "subscription": {
            "name": os.environ.get("SAMPLE_SUBSCRIPTION_NAME", "sample-subscription"),
            "callback-url": os.environ.get(
                "SAMPLE_CALLBACK_URL", "http://callback-sink:8080/notify/sample"
            ),
            "min-notify-interval": int(os.environ.get("SAMPLE_MIN_NOTIFY_INTERVAL", "5")),
            "metadata": {"created-by": "compose sample-subscription"},
        },
    }


def main() -> int:
    try:
        settings = load_settings(CommonSettings)
    except SettingsError as exc:
        print(f"sample-subscription: configuration error: {exc}", file=sys.stderr)
        return 2
    deadline = time.monotonic() + 60
    while True:
        try:
            ensure_topics(make_admin(settings), [contract_topics(settings)["commands"]], 10.0)
            break
        except Exception as exc:  # the broker may still be electing itself: retry, bounded
            if time.monotonic() > deadline:
                print(f"sample-subscription: Kafka not usable: {exc}", file=sys.stderr)
                return 1
            time.sleep(1)
    command = sample_command()
    producer = make_producer(settings)
    errors: list[str] = []
    producer.produce(
        settings.commands_topic,
        key=str(command["instance-id"]).encode(),
        value=json.dumps(command).encode(),
        on_delivery=lambda err, _msg: errors.append(str(err)) if err else None,
    )
    if producer.flush(30) != 0 or errors:
        print(f"sample-subscription: not delivered: {errors or 'timeout'}", file=sys.stderr)
        return 1
    print(json.dumps({"event": "command produced", "topic": settings.commands_topic, **command}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
