"""Generates the JSON Schemas in ``schemas/`` from the notifier's pydantic models.

The models are the source of truth; the checked-in schema files are for users of other
languages. ``python -m services.notifier.json_schemas`` rewrites them, and a test fails when
a checked-in file differs from what the models generate.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, TypeAdapter

from deltawatch.schema_files import SOURCE_DIR
from services.notifier.commands import COMMAND_ADAPTER, CommandResult
from services.notifier.delivery.dead_letter import DeadLetter
from services.notifier.subscription_state import SubscriptionState

SCHEMA_DIR = SOURCE_DIR


def _schema(source: type[BaseModel] | TypeAdapter[Any], title: str, description: str) -> str:
    if isinstance(source, TypeAdapter):
        document = source.json_schema(by_alias=True)
    else:
        document = source.model_json_schema(by_alias=True)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": title,
        "description": description,
        **{k: v for k, v in document.items() if k not in {"title", "description"}},
    }
    return json.dumps(document, indent=2, sort_keys=True) + "\n"


def generated() -> dict[str, str]:
    """File name in ``schemas/`` → its content."""
    return {
        "subscription-command.schema.json": _schema(
            COMMAND_ADAPTER,
            "SubscriptionCommand",
            "A command on DELTAWATCH_COMMANDS_TOPIC (CONTRACT §4).",
        ),
        "command-result.schema.json": _schema(
            CommandResult,
            "CommandResult",
            "The one result of a command on DELTAWATCH_COMMAND_RESULTS_TOPIC (CONTRACT §4).",
        ),
        "subscription-state.schema.json": _schema(
            SubscriptionState,
            "SubscriptionState",
            "A subscription on DELTAWATCH_SUBSCRIPTIONS_TOPIC, key <instance-id>/<name> "
            "(CONTRACT §4); null on delete.",
        ),
        "dead-letter.schema.json": _schema(
            DeadLetter,
            "DeadLetter",
            "A notification given up on, on DELTAWATCH_DLQ_TOPIC (CONTRACT §6).",
        ),
    }


def main() -> None:
    for name, content in generated().items():
        (SCHEMA_DIR / name).write_text(content)
        print(f"wrote schemas/{name}")


if __name__ == "__main__":
    main()
