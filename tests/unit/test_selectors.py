"""Label and field selector syntax: what Kubernetes accepts passes unchanged, the rest gets a named problem.

The same cases are checked against the real API server in tests/integration/test_resources_function.py.
"""

from __future__ import annotations

import pytest
from kubilitics.errors import KubiliticsError
from kubilitics.services.selectors import validate_field_selector, validate_label_selector

# Accepted by apimachinery's labels.Parse (checked against kube-apiserver 1.34).
VALID_LABEL_SELECTORS = [
    "app=web",
    "app==web",
    "app!=web",
    "app",
    "!app",
    "app=",
    "app in (a,b),tier notin (cache)",
    "app in ()",
    "app in (a,)",
    "app in (,)",
    "example.com/app=v1.2_x",
    "k8s.io/name",
    "in=notin",
    "replicas>3",
    "replicas<10",
    "  app = web ,  tier in ( a , b )  ",
    "a" * 63 + "=" + "b" * 63,
]

# (selector, a fragment of the problem we report)
INVALID_LABEL_SELECTORS = [
    ("app=(", "expected a value after '='"),
    ("=web", "expected a label key"),
    ("app web", "expected an operator"),
    ("app in (a b)", "expected ',' or ')'"),
    ("app in a", "expected '(' after 'in'"),
    ("app notin (b", "found 'end of string' at position 12, expected ',' or ')'"),
    ("a=b,", "expected a label key after ','"),
    ("a,,b", "expected a label key after ','"),
    ("!a=b", "cannot be followed by an operator"),
    ("replicas>x", "needs a whole number"),
    ("replicas>1.5", "needs a whole number"),
    ("replicas>-1", "must be empty or consist of alphanumerics"),
    ("app=-web", "must be empty or consist of alphanumerics"),
    ("app=" + "x" * 64, "longer than 63 characters"),
    ("Example.com/app=v", "must be a lowercase DNS-1123 subdomain"),
    ("a/b/c=d", "more than one '/'"),
    ("/app=v", "empty prefix"),
    ("-app=v", "key name '-app'"),
]


@pytest.mark.parametrize("selector", VALID_LABEL_SELECTORS)
def test_valid_label_selectors_pass_unchanged(selector):
    assert validate_label_selector(selector) == selector


@pytest.mark.parametrize(("selector", "problem"), INVALID_LABEL_SELECTORS)
def test_invalid_label_selectors_name_the_problem(selector, problem):
    with pytest.raises(KubiliticsError) as raised:
        validate_label_selector(selector)
    error = raised.value
    assert (error.code, error.status) == ("invalid_label_selector", 400)
    assert problem in error.message and error.details["selector"] == selector


def test_label_selector_error_points_at_the_position():
    with pytest.raises(KubiliticsError) as raised:
        validate_label_selector("app=web,tier in (a b)")
    assert raised.value.details["position"] == 19


@pytest.mark.parametrize("selector", [None, "", "   "])
def test_empty_selectors_select_everything(selector):
    assert validate_label_selector(selector) is None
    assert validate_field_selector(selector) is None


@pytest.mark.parametrize(
    ("selector", "sent"),
    [
        ("status.phase=Running", "status.phase=Running"),
        ("status.phase!=Running,spec.nodeName==n1", "status.phase!=Running,spec.nodeName==n1"),
        (" metadata.name = web ", "metadata.name=web"),
        (r"metadata.name=a\,b\=c\\d", r"metadata.name=a\,b\=c\\d"),
        ("spec.nodeName=", "spec.nodeName="),
        ("metadata.name=a,,", "metadata.name=a"),
    ],
)
def test_valid_field_selectors(selector, sent):
    assert validate_field_selector(selector) == sent


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ("status.phase", "has no operator"),
        ("=Running", "has no field name"),
        ("status.phase=Run=ning", "unescaped '='"),
        (r"status.phase=Run\ning", r"invalid escape sequence '\n'"),
        ("status.phase=Running\\", "single backslash"),
        ("status phase=Running", "contains whitespace"),
    ],
)
def test_invalid_field_selectors_name_the_problem(selector, problem):
    with pytest.raises(KubiliticsError) as raised:
        validate_field_selector(selector)
    assert raised.value.code == "invalid_field_selector"
    assert problem in raised.value.message
