"""tritonop: run NVIDIA Triton Inference Server on Kubernetes from InferenceService resources."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tritonop")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

GROUP = "tritonop.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "InferenceService"
PLURAL = "inferenceservices"
FIELD_MANAGER = "tritonop"
