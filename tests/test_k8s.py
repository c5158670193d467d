"""The no-op detection of k8s.py: desired state compared with what the API server returns."""

from __future__ import annotations

from tritonop.k8s import is_subset


def test_server_added_fields_do_not_count_as_changes() -> None:
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "triton", "image": "x"}]}}}}
    live = {
        "spec": {
            "progressDeadlineSeconds": 600,
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "triton",
                            "image": "x",
                            "terminationMessagePath": "/dev/termination-log",
                        }
                    ],
                    "dnsPolicy": "ClusterFirst",
                }
            },
        }
    }
    assert is_subset(desired, live)


def test_quantities_compare_by_value() -> None:
    assert is_subset({"cpu": "0.5", "memory": "1024Mi"}, {"cpu": "500m", "memory": "1Gi"})
    assert is_subset({"nvidia.com/gpu": 1}, {"nvidia.com/gpu": "1"})
    assert not is_subset({"cpu": "2"}, {"cpu": "1"})


def test_real_changes_are_seen() -> None:
    assert not is_subset({"a": {"b": 1}}, {"a": {"b": 2}})
    assert not is_subset({"a": [1, 2]}, {"a": [1]})
    assert not is_subset({"a": "x"}, {})
    assert not is_subset({"flag": True}, {"flag": "True"})
    assert not is_subset({"name": "triton"}, {"name": "other"})


def test_refused_and_server_message() -> None:
    from kubernetes.client.exceptions import ApiException

    from tritonop.k8s import refused, server_message

    def error(status: int, body: str = "") -> ApiException:
        failure = ApiException(status=status, reason="Reason")
        failure.body = body
        return failure

    assert [refused(error(code)) for code in (400, 403, 404, 409, 422, 429, 500, 503)] == [
        True,
        True,
        True,
        False,
        True,
        False,
        False,
        False,
    ]
    body = '{"kind": "Status", "message": "Deployment.apps \\"x\\" is invalid: bad"}'
    assert server_message(error(422, body)) == 'Deployment.apps "x" is invalid: bad'
    assert server_message(error(500, "not json")) == "HTTP 500 Reason"
