"""CPS xpaths of an instance's resources (CONTRACT §7), built from the resource key alone.

Every CPS event names what changed by xpath. An anchor (an instance) is modelled as one
``/instance-status`` container holding a ``resources`` list keyed by the five attributes that
identify a Kubernetes object — its cluster first (CONTRACT §10), then what identifies it
inside that cluster — always in this order (one line, wrapped here)::

    /instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod'
                               and @namespace='ns' and @name='web-0']

``apiVersion`` is ``group/version``, or ``version`` alone for the core group, as Kubernetes
writes it in the object itself.

Quoting rule: every value is a single-quoted string literal, and a single quote inside a value
is written twice (``O'Brien`` → ``'O''Brien'``). This is the XPath 2.0+ escape (XPath 2.0
§3.1.1, "StringLiteral"), which CPS path also reads; XPath 1.0 has no escape at all. Double
quotes and every other character stand as they are. Kubernetes names never contain quotes
today, but kinds from CRDs and future validation rules are not ours to bet on.

Cluster-scoped objects (no namespace, e.g. a ``Namespace`` or a ``ClusterRole`` listed as
part of an instance) have no ``@namespace`` term at all — an absent attribute, not an empty
one, which is what an XPath predicate over such a node would see::

    /instance-status/resources[@cluster='east' and @apiVersion='rbac.authorization.k8s.io/v1'
                               and @kind='ClusterRole' and @name='reader']

:func:`parse_resource_xpath` is the inverse, for consumers and tests.
"""

from __future__ import annotations

import re

from deltawatch.resource_identity import ResourceKey

ROOT_XPATH = "/instance-status"
"""The anchor's root node: the ``xpath`` of a ``delta``-format event as a whole."""

_RESOURCES = f"{ROOT_XPATH}/resources"


def xpath_literal(value: str) -> str:
    """``value`` as a single-quoted XPath 2.0 string literal (``'`` doubled)."""
    return "'" + value.replace("'", "''") + "'"


def resource_xpath(key: ResourceKey) -> str:
    """The xpath of one resource of an anchor; see the module docstring for the rules."""
    terms = [
        f"@cluster={xpath_literal(key.cluster)}",
        f"@apiVersion={xpath_literal(key.api_version)}",
        f"@kind={xpath_literal(key.kind)}",
    ]
    if key.namespace:
        terms.append(f"@namespace={xpath_literal(key.namespace)}")
    terms.append(f"@name={xpath_literal(key.name)}")
    return f"{_RESOURCES}[{' and '.join(terms)}]"


class XPathParseError(ValueError):
    """Text that :func:`resource_xpath` could not have produced."""


_TERM = re.compile(r"@(cluster|apiVersion|kind|namespace|name)='((?:[^']|'')*)'")


def parse_resource_xpath(xpath: str) -> ResourceKey:
    """The resource key a :func:`resource_xpath` names (raises :class:`XPathParseError`)."""
    prefix = f"{_RESOURCES}["
    if not xpath.startswith(prefix) or not xpath.endswith("]"):
        raise XPathParseError(f"not a resource xpath: {xpath!r}")
    body = xpath[len(prefix) : -1]
    values: dict[str, str] = {}
    position = 0
    while True:
        match = _TERM.match(body, position)
        if match is None or match.group(1) in values:
            raise XPathParseError(f"bad predicate at {position} in {xpath!r}")
        values[match.group(1)] = match.group(2).replace("''", "'")
        position = match.end()
        if position == len(body):
            break
        if not body.startswith(" and ", position):
            raise XPathParseError(f"expected ' and ' at {position} in {xpath!r}")
        position += len(" and ")
    expected = ["cluster", "apiVersion", "kind", "namespace", "name"]
    if "namespace" not in values:
        expected.remove("namespace")
    if list(values) != expected or values.get("namespace") == "":
        raise XPathParseError(f"predicates must be {expected} in that order: {xpath!r}")
    group, _, version = values["apiVersion"].rpartition("/")
    return ResourceKey(
        cluster=values["cluster"],
        group=group,
        version=version,
        kind=values["kind"],
        namespace=values.get("namespace", ""),
        name=values["name"],
    )
