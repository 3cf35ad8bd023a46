"""The seed-compatible REST facade of the notifier (CONTRACT §9), over the Kafka commands.

Clients of the k8splugin status-subscription API (the SO CNF adapter among them) must be able
to point at deltawatch by changing a URL, so routes, bodies and status codes are the seed's.
Nothing here decides whether a subscription may exist: writes become commands on the commands
topic and reads come from the restored subscriptions topic, so any replica answers any request.

One job per module, so the pure parts are tested without a server or a broker:

- :mod:`.errors` — the one JSON error shape every answer uses;
- :mod:`.translation` — request body → command subscription, command result → HTTP status;
- :mod:`.facade` — the routes and their two Kafka edges (:class:`~.facade.RestFacade`);
- :mod:`.access_review` — who may call (``DELTAWATCH_API_AUTH=kubernetes``: TokenReview,
  then SubjectAccessReview per verb, as kube-rbac-proxy);
- :mod:`.openapi` — the OpenAPI document, built from the command models;
  ``python -m services.notifier.rest.openapi`` rewrites ``schemas/openapi.json``.

The package's ``__init__`` imports nothing, so importing the pure modules never loads Kafka
clients or registers the facade's metrics.
"""
