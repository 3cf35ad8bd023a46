"""deltawatch: the runtime the watcher, differ and notifier share.

Settings, Kafka plumbing, the compacted-table reader, serde, the shared contract types and
observability live here so that each worker under ``services/`` holds only its own job. This
package imports no worker and no developer tooling (``deltawatch_tools``): a test walks every
module's imports to keep it so.
"""
