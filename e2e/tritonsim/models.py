"""The models the emulator serves: Triton's `simple` example and look-alikes.

Every model has the signature of Triton's `simple` example model (two INT32 inputs of 16
elements, OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, batching up to 8 rows), whatever
its name. A model loaded by name with `--load-model resnet50` therefore answers `simple`'s
tensors: the emulator cannot know a real model's signature, and a fixed, checkable one lets
load generators verify every answer. Clients read the signature from the metadata endpoint
like they would from a real server.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .tensors import Array, InferRequest, OutputTensor, ProtocolError


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, KServe datatype, dims without the batch dimension."""

    name: str
    datatype: str
    dims: tuple[int, ...]

    @property
    def config_type(self) -> str:
        """The datatype spelled as in model configuration (TYPE_INT32)."""
        return "TYPE_" + ("STRING" if self.datatype == "BYTES" else self.datatype)


SIMPLE_INPUTS = (TensorSpec("INPUT0", "INT32", (16,)), TensorSpec("INPUT1", "INT32", (16,)))
SIMPLE_OUTPUTS = (TensorSpec("OUTPUT0", "INT32", (16,)), TensorSpec("OUTPUT1", "INT32", (16,)))


@dataclass(frozen=True)
class AddSubModel:
    """A model with `simple`'s add/sub semantics under any name."""

    name: str
    version: str = "1"
    max_batch_size: int = 8
    """Largest batch dimension one request may carry (the model config's max_batch_size)."""
    platform: str = "tensorflow_graphdef"
    backend: str = "tensorflow"
    inputs: tuple[TensorSpec, ...] = SIMPLE_INPUTS
    outputs: tuple[TensorSpec, ...] = SIMPLE_OUTPUTS

    def metadata(self) -> dict[str, Any]:
        """The model metadata response (`GET /v2/models/{name}`): shapes carry -1 for batch."""

        def describe(tensor: TensorSpec) -> dict[str, Any]:
            return {
                "name": tensor.name,
                "datatype": tensor.datatype,
                "shape": [-1, *tensor.dims] if self.max_batch_size > 0 else list(tensor.dims),
            }

        return {
            "name": self.name,
            "versions": [self.version],
            "platform": self.platform,
            "inputs": [describe(tensor) for tensor in self.inputs],
            "outputs": [describe(tensor) for tensor in self.outputs],
        }

    def config(
        self, *, instances: int, batcher_max_batch_size: int, max_queue_delay_ms: float
    ) -> dict[str, Any]:
        """The model configuration response (`GET /v2/models/{name}/config`).

        It describes what the emulator really does: `instance_group.count` is the number of
        emulated instances, and a `dynamic_batching` section appears only when the emulated
        scheduler forms batches (its largest batch is then `batcher_max_batch_size`).
        """
        config: dict[str, Any] = {
            "name": self.name,
            "platform": self.platform,
            "backend": self.backend,
            "version_policy": {"latest": {"num_versions": 1}},
            "max_batch_size": self.max_batch_size,
            "input": [
                {
                    "name": tensor.name,
                    "data_type": tensor.config_type,
                    "format": "FORMAT_NONE",
                    "dims": list(tensor.dims),
                    "is_shape_tensor": False,
                    "allow_ragged_batch": False,
                    "optional": False,
                }
                for tensor in self.inputs
            ],
            "output": [
                {
                    "name": tensor.name,
                    "data_type": tensor.config_type,
                    "dims": list(tensor.dims),
                    "label_filename": "",
                    "is_shape_tensor": False,
                }
                for tensor in self.outputs
            ],
            "instance_group": [
                {"name": self.name, "kind": "KIND_CPU", "count": instances, "gpus": []}
            ],
            "default_model_filename": "model.graphdef",
            "parameters": {},
        }
        if batcher_max_batch_size > 1:
            config["dynamic_batching"] = {
                "preferred_batch_size": [batcher_max_batch_size],
                "max_queue_delay_microseconds": int(max_queue_delay_ms * 1000),
                "preserve_ordering": False,
            }
        return config

    def validate(self, request: InferRequest) -> int:
        """Check a request against the signature; return its batch size (rows)."""
        expected = {tensor.name: tensor for tensor in self.inputs}
        unknown = sorted(set(request.inputs) - set(expected))
        if unknown:
            raise ProtocolError(
                f"unexpected inference input '{unknown[0]}' for model '{self.name}'"
            )
        missing = sorted(set(expected) - set(request.inputs))
        if missing:
            raise ProtocolError(
                f"expected {len(expected)} inputs but got {len(request.inputs)} inputs for "
                f"model '{self.name}'. Got input(s) {sorted(request.inputs)}, but missing "
                f"required input(s) {missing}"
            )
        batch: int | None = None
        for name, spec in expected.items():
            datatype = request.datatypes[name]
            if datatype != spec.datatype:
                raise ProtocolError(
                    f"inference input '{name}' data-type is '{datatype}', but model "
                    f"'{self.name}' expects '{spec.datatype}'"
                )
            shape = request.inputs[name].shape
            if len(shape) != len(spec.dims) + 1 or tuple(shape[1:]) != spec.dims:
                raise ProtocolError(
                    f"unexpected shape for input '{name}' for model '{self.name}'. Expected "
                    f"[-1,{','.join(str(dim) for dim in spec.dims)}], got "
                    f"[{','.join(str(dim) for dim in shape)}]"
                )
            if batch is None:
                batch = shape[0]
            elif shape[0] != batch:
                raise ProtocolError(
                    f"inputs of model '{self.name}' must all have the same batch size"
                )
        assert batch is not None  # at least one input is required by the signature
        if batch < 1 or batch > self.max_batch_size:
            raise ProtocolError(
                f"inference request batch-size must be <= {self.max_batch_size} for '{self.name}'"
            )
        if request.requested_outputs is not None:
            known = {tensor.name for tensor in self.outputs}
            for output in request.requested_outputs:
                if output.name not in known:
                    raise ProtocolError(
                        f"unexpected inference output '{output.name}' for model '{self.name}'"
                    )
        return batch

    def compute(self, request: InferRequest) -> list[OutputTensor]:
        """Sum and difference (wrapping like int32 arithmetic), in the requested outputs."""
        first = request.inputs["INPUT0"].astype(np.int32)
        second = request.inputs["INPUT1"].astype(np.int32)
        with np.errstate(over="ignore"):
            values: dict[str, Array] = {"OUTPUT0": first + second, "OUTPUT1": first - second}
        if request.requested_outputs is None:
            wanted = [(tensor.name, request.binary_data_output) for tensor in self.outputs]
        else:
            wanted = [(output.name, output.binary) for output in request.requested_outputs]
        return [OutputTensor(name, "INT32", values[name], binary) for name, binary in wanted]
