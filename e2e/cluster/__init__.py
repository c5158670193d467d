"""The e2e suite's local Kubernetes control plane: see cluster.py and e2e/README.md."""

from .cluster import (  # noqa: F401
    ApiError,
    ClusterError,
    LocalCluster,
    NodeSpec,
    default_nodes,
    node_manifest,
    signals_raise,
    wait_for,
)
