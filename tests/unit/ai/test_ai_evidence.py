"""Evidence: sanitized on the way in, addressable, and round-trips through JSON."""

from __future__ import annotations

import json

from kubilitics.ai.evidence import Evidence, ObjectRef, sanitize

SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "type": "Opaque",
    "metadata": {
        "name": "smtp-credentials",
        "namespace": "shop",
        "uid": "5b1c",
        "annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": '{"stringData":{"password":"hunter2"}}',
            "team": "mail",
        },
        "managedFields": [{"manager": "kubectl"}],
    },
    "data": {"username": "bWFpbGVy", "password": "aHVudGVyMg=="},
}


def test_secrets_keep_names_and_keys_only():
    kept = sanitize(SECRET)
    text = json.dumps(kept)
    assert "aHVudGVyMg==" not in text and "hunter2" not in text and "bWFpbGVy" not in text
    assert kept["keys"] == ["password", "username"]
    assert kept["metadata"]["annotations"] == {"team": "mail"}
    assert "managedFields" not in kept["metadata"]


def test_evidence_never_holds_a_value_even_when_given_one():
    ev = Evidence(target=ObjectRef("Pod", "mailer", "shop"), collected_at=0.0)
    ev.add(SECRET)
    ev.add(
        {
            "kind": "ConfigMap",
            "metadata": {"name": "cfg", "namespace": "shop"},
            "data": {"DB_URL": "postgres://u:p@db"},
        }
    )
    text = json.dumps(ev.to_dict())
    assert "hunter2" not in text and "aHVudGVyMg==" not in text and "postgres://u:p@db" not in text
    assert ev.get("ConfigMap", "cfg", "shop")["keys"] == ["DB_URL"]


def test_round_trip_keeps_everything(evidence):
    ev = evidence("missing-secret-key")
    again = Evidence.from_dict(json.loads(json.dumps(ev.to_dict())))
    assert again.to_dict() == ev.to_dict()
    assert again.get("Secret", "smtp-credentials", ev.target.namespace)["keys"] == ["pasword", "username"]


def test_events_for_an_object_skip_an_older_object_of_the_same_name(evidence):
    ev = evidence("crashloop-app-error")
    pod = ev.pods[0]
    events = ev.events_for(pod)
    assert events and all(e["involvedObject"]["uid"] == pod["metadata"]["uid"] for e in events)
    other = {**pod, "metadata": {**pod["metadata"], "uid": "another-incarnation"}}
    assert ev.events_for(other) == []
