"""hpa analyzer: utilization targets on containers without requests."""

from __future__ import annotations

from kubilitics.ai.analyzers import hpa
from kubilitics.ai.evidence import Evidence


def test_cpu_utilization_without_cpu_request(evidence):
    [finding] = hpa.ANALYZER(evidence("hpa-no-requests"))
    assert finding.category == "hpa_missing_requests"
    assert "container(s) api have no cpu request" in finding.summary
    assert finding.recommendations[0].patch == {
        "spec": {
            "template": {
                "spec": {"containers": [{"name": "api", "resources": {"requests": {"cpu": "100m"}}}]}
            }
        }
    }


def test_requests_present(raw):
    doc = raw("hpa-no-requests")
    dep = next(o for o in doc["objects"].values() if o["kind"] == "Deployment")
    dep["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    assert hpa.ANALYZER(Evidence.from_dict(doc)) == []
