"""The e2e suite's local Kubernetes control plane (e2e/README.md, "The simulated cluster").

Modules: ``cluster`` (LocalCluster: lifecycle, nodes, identities, API access), ``components``
(the command lines and the audit policy), ``processes`` (starting and stopping processes by
recorded pid), ``pki`` (certificates and kubeconfigs), ``nodes`` (Node objects as data),
``binaries`` (the pinned binaries and their build), ``errors``.
"""

from .cluster import (
    LocalCluster,
    cluster_is_gone,
    clusters_root,
    default_state_dir,
    sweep_stale_clusters,
)
from .errors import ApiError, ClusterError
from .nodes import NodeSpec, default_nodes, node_manifest
from .processes import signals_raise

__all__ = [
    "ApiError",
    "ClusterError",
    "LocalCluster",
    "NodeSpec",
    "cluster_is_gone",
    "clusters_root",
    "default_nodes",
    "default_state_dir",
    "node_manifest",
    "signals_raise",
    "sweep_stale_clusters",
]
