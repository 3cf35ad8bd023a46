"""``python -m deltawatch_tools.localkube``: the ``deltawatch kube`` commands alone."""

from deltawatch_tools.localkube.cli import kube_app

kube_app(prog_name="python -m deltawatch_tools.localkube")
