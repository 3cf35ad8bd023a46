"""deltawatch_tools: what a developer runs around the pipeline, never what a worker imports.

The local Kafka broker and kube-apiserver, the demo, the compose driver, the callback sink and
the ``deltawatch`` command line live here, apart from the runtime package ``deltawatch``: the
workers import only ``deltawatch``, which imports neither a worker nor this package, so a
worker image needs none of it and a change to the tooling cannot break a worker.
"""
