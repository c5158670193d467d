"""The e2e suite's local Kubernetes control plane: see cluster.py and e2e/README.md."""

from .cluster import (  # noqa: F401
    ApiError,
    ClusterError,
    LocalCluster,
    NodeSpec,
    clusters_root,
    default_nodes,
    default_state_dir,
    node_manifest,
    signals_raise,
    sweep_stale_clusters,
    wait_for,
)
