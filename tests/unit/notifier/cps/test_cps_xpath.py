"""CPS xpaths built from resource keys: layout (cluster first), quoting rule, cluster-scoped
objects."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from deltawatch.resource_identity import ResourceKey
from services.notifier.cps.xpath import (
    XPathParseError,
    parse_resource_xpath,
    resource_xpath,
    xpath_literal,
)


@pytest.mark.parametrize(
    ("key", "xpath"),
    [
        pytest.param(
            ResourceKey("east", "", "v1", "Pod", "ns", "web-0"),
            "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod'"
            " and @namespace='ns' and @name='web-0']",
            id="core group",
        ),
        pytest.param(
            ResourceKey("east", "apps", "v1", "StatefulSet", "prod", "db"),
            "/instance-status/resources[@cluster='east'"
            " and @apiVersion='apps/v1' and @kind='StatefulSet'"
            " and @namespace='prod' and @name='db']",
            id="named group",
        ),
        pytest.param(
            ResourceKey("east", "rbac.authorization.k8s.io", "v1", "ClusterRole", "", "reader"),
            "/instance-status/resources[@cluster='east'"
            " and @apiVersion='rbac.authorization.k8s.io/v1'"
            " and @kind='ClusterRole' and @name='reader']",
            id="cluster-scoped: no namespace term",
        ),
        pytest.param(
            ResourceKey("east", "", "v1", "ConfigMap", "o'ns", "it's"),
            "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='ConfigMap'"
            " and @namespace='o''ns' and @name='it''s']",
            id="single quotes doubled",
        ),
        pytest.param(
            ResourceKey("east", "", "v1", "ConfigMap", "ns", "say \"hi\" ''"),
            "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='ConfigMap'"
            " and @namespace='ns' and @name='say \"hi\" ''''']",
            id="double quotes as they are, consecutive single quotes each doubled",
        ),
    ],
)
def test_resource_xpath(key: ResourceKey, xpath: str) -> None:
    assert resource_xpath(key) == xpath
    assert parse_resource_xpath(xpath) == key


@pytest.mark.parametrize(
    ("value", "literal"),
    [("", "''"), ("a", "'a'"), ("'", "''''"), ("a'b'", "'a''b'''"), ('"', "'\"'")],
)
def test_xpath_literal(value: str, literal: str) -> None:
    assert xpath_literal(value) == literal


_text = st.text(alphabet=st.sampled_from("ab' \"]=/@-."), min_size=1, max_size=12)


@given(
    cluster=_text,
    group=st.sampled_from(["", "apps", "example.com"]),
    kind=_text,
    namespace=st.just("") | _text,
    name=_text,
)
def test_any_key_round_trips(
    cluster: str, group: str, kind: str, namespace: str, name: str
) -> None:
    """Quotes, brackets and ' and ' inside values never confuse the layout."""
    key = ResourceKey(cluster, group, "v1", kind, namespace, name)
    assert parse_resource_xpath(resource_xpath(key)) == key


@pytest.mark.parametrize(
    "xpath",
    [
        "/other/resources[@apiVersion='v1' and @kind='Pod' and @name='a']",
        "/instance-status/resources[@kind='Pod' and @apiVersion='v1' and @name='a']",
        "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod'"
        " and @name='it's']",
        "/instance-status/resources[@apiVersion='v1' and @kind='Pod' and @name='a']",
        "/instance-status/resources[@apiVersion='v1' and @cluster='east' and @kind='Pod'"
        " and @name='a']",
        "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod'"
        " and @namespace='' and @name='a']",
        "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod']",
        "/instance-status/resources[@cluster='east' and @apiVersion='v1' and @kind='Pod'"
        " and @name='a' and @name='b']",
    ],
)
def test_malformed_xpaths_are_refused(xpath: str) -> None:
    with pytest.raises(XPathParseError):
        parse_resource_xpath(xpath)
