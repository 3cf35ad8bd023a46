"""``python -m deltawatch.localkube``: the ``deltawatch kube`` commands without the main CLI."""

from deltawatch.localkube.cli import kube_app

kube_app(prog_name="python -m deltawatch.localkube")
