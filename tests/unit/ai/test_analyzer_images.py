"""images analyzer: tags and repositories that do not exist, registries that want credentials,
references that do not parse, pull policy Never."""

from __future__ import annotations

from kubilitics.ai.analyzers import images
from kubilitics.ai.evidence import ObjectRef


def test_missing_tag_is_image_not_found_citing_the_registry_answer(evidence):
    ev = evidence("bad-image-tag")
    [finding] = images.ANALYZER(ev)
    assert finding.category == "image_not_found"
    assert finding.confidence >= 0.9
    assert finding.subject == ObjectRef("Deployment", "web", ev.target.namespace)
    assert "docker.io has no nginx:1.272" in finding.summary
    reasons = {c.value for c in finding.citations if c.field and c.field.endswith("waiting.reason")}
    assert reasons & {"ErrImagePull", "ImagePullBackOff"}
    assert any(c.source == "event" and "not found" in (c.value or "") for c in finding.citations)
    assert finding.recommendations[0].action == "fix_image_tag"


def test_private_registry_without_pull_secret_is_image_pull_auth(evidence):
    [finding] = images.ANALYZER(evidence("private-registry-no-secret"))
    assert finding.category == "image_pull_auth"
    assert finding.confidence >= 0.9
    assert "registry.internal.example.com" in finding.summary
    assert "no imagePullSecret" in finding.summary
    assert "imagePullSecrets" in finding.recommendations[0].details


def test_named_pull_secret_that_does_not_exist_is_cited(raw):
    doc = raw("private-registry-no-secret")
    ns = doc["target"]["namespace"]
    for obj in doc["objects"].values():
        if obj["kind"] == "Pod":
            obj["spec"]["imagePullSecrets"] = [{"name": "regcred"}]
    doc["absent"].append({"kind": "Secret", "name": "regcred", "namespace": ns})
    from kubilitics.ai.evidence import Evidence

    [finding] = images.ANALYZER(Evidence.from_dict(doc))
    assert finding.category == "image_pull_auth"
    assert any(c.source == "absent" and c.object.name == "regcred" for c in finding.citations)
    assert "regcred" in finding.recommendations[0].details


def test_docker_hub_denial_means_missing_for_official_images_and_private_for_org_images(raw):
    from kubilitics.ai.evidence import Evidence

    denied = (
        'failed to pull and unpack image "docker.io/library/ngnix:1.27": failed to resolve reference '
        '"docker.io/library/ngnix:1.27": pull access denied, repository does not exist or may require '
        "authorization: server message: insufficient_scope: authorization failed"
    )
    for image, expected in (("ngnix:1.27", "image_not_found"), ("acme/billing:2.0", "image_pull_auth")):
        doc = raw("bad-image-tag")
        for obj in doc["objects"].values():
            if obj["kind"] == "Pod":
                obj["spec"]["containers"][0]["image"] = image
                obj["status"]["containerStatuses"][0]["state"]["waiting"]["message"] = denied
        doc["events"] = []
        [finding] = images.ANALYZER(Evidence.from_dict(doc))
        assert finding.category == expected, image


def test_invalid_reference(evidence):
    [finding] = images.ANALYZER(evidence("invalid-image-name"))
    assert finding.category == "invalid_image_name"
    assert "envoyproxy/Envoy:v1.31" in finding.summary
    assert any(c.source == "event" and c.reason == "InspectFailed" for c in finding.citations)


def test_pull_policy_never_proposes_if_not_present(evidence):
    [finding] = images.ANALYZER(evidence("image-never-pull"))
    assert finding.category == "image_never_pull"
    rec = finding.recommendations[0]
    assert rec.patch == {
        "spec": {"template": {"spec": {"containers": [{"name": "app", "imagePullPolicy": "IfNotPresent"}]}}}
    }


def test_previous_revision_image_is_proposed_when_the_deployment_ran_before(raw):
    from kubilitics.ai.evidence import Evidence

    doc = raw("bad-image-tag")
    rs = next(o for o in doc["objects"].values() if o["kind"] == "ReplicaSet")
    old = {
        **rs,
        "metadata": {
            **rs["metadata"],
            "name": "web-5d8c7f9b6d",
            "uid": "old-rs-uid",
            "annotations": {"deployment.kubernetes.io/revision": "1"},
        },
    }
    old["spec"] = {**rs["spec"], "replicas": 2}
    old["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1.27"
    old["status"] = {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}
    rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = "2"
    doc["objects"]["ReplicaSet/{}/web-5d8c7f9b6d".format(doc["target"]["namespace"])] = old
    [finding] = images.ANALYZER(Evidence.from_dict(doc))
    patch = finding.recommendations[0].patch
    assert patch == {
        "spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": "nginx:1.27"}]}}}
    }


def test_running_containers_have_no_image_findings(evidence):
    for name in ("healthy-deployment", "crashloop-app-error", "oomkilled-worker", "readiness-never-ready"):
        assert images.ANALYZER(evidence(name)) == [], name
