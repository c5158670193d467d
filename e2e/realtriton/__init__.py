"""NVIDIA's real tritonserver for the e2e data plane (test infrastructure only).

`server.TritonServer` starts the tritonserver of the `nvidia-pytriton` wheel (the `triton`
extra) bound to one loopback address; `repository.write_repository` writes the model
repository it serves: Triton's `simple` add/sub model in the python backend, timed like the
emulator's (`e2e/tritonsim`) from the same `ServiceSettings`. See e2e/tritonsim/README.md for
how the emulator and the real server differ.
"""

from .repository import ModelSpec, model_config, write_repository
from .server import (
    TritonInstallation,
    TritonNotInstalled,
    TritonServer,
    TritonServerConfig,
)

__all__ = [
    "ModelSpec",
    "TritonInstallation",
    "TritonNotInstalled",
    "TritonServer",
    "TritonServerConfig",
    "model_config",
    "write_repository",
]
