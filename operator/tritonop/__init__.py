"""tritonop: run NVIDIA Triton Inference Server on Kubernetes from InferenceService resources."""

from typing import Any

GROUP = "tritonop.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
FIELD_MANAGER = "tritonop"


def __getattr__(name: str) -> Any:
    """`__version__`, looked up when asked for: importlib.metadata costs about 8 MiB, and the
    metrics parser's process imports this package only to parse pages."""
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tritonop")
    except PackageNotFoundError:  # running from a source tree without installation
        return "0.0.0"
