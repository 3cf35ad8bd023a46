"""deltawatch: what the watcher, differ and notifier share.

Settings, Kafka plumbing, serde, observability and the local broker / API server live here so
that each worker under ``services/`` holds only its own job.
"""
