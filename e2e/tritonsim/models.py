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


#: What tritonserver appends to a shape error of a model with a batch dimension.
_BATCH_DIMENSION_NOTE = (
    "NOTE: Setting a non-zero max_batch_size in the model config requires a batch dimension "
    "to be prepended to each input shape. If you want to specify the full shape including the "
    "batch dim in your input dims config, try setting max_batch_size to zero. See the model "
    "configuration docs for more info on max_batch_size."
)


def _name_list(names: list[str]) -> str:
    """Triton's rendering of the inputs a request has: ['A','B']."""
    return "[" + ",".join(f"'{name}'" for name in names) + "]"


def _missing_list(names: list[str]) -> str:
    """Triton's rendering of the missing inputs, which drops the "[" when there are none."""
    text = "[" + "".join(f"'{name}'," for name in names)
    return text[:-1] + "]"


@dataclass(frozen=True)
class AddSubModel:
    """A model with `simple`'s add/sub semantics under any name."""

    name: str
    version: str = "1"
    max_batch_size: int = 8
    """Largest batch dimension one request may carry (the model config's max_batch_size)."""
    backend: str = "python"
    """The backend of the real repository's model (e2e/realtriton), which Triton reports as
    the metadata's platform and the configuration's backend (with an empty platform)."""
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
            "platform": self.backend,
            "inputs": [describe(tensor) for tensor in self.inputs],
            "outputs": [describe(tensor) for tensor in self.outputs],
        }

    def config(
        self,
        *,
        instances: int,
        batcher_max_batch_size: int,
        max_queue_delay_ms: float,
        max_queue_size: int,
    ) -> dict[str, Any]:
        """The model configuration response (`GET /v2/models/{name}/config`).

        It describes what the emulator does, in the terms of the configuration that
        e2e/realtriton writes for the same settings: `instance_group.count` is the number of
        emulated instances, and the `dynamic_batching` section is always there (its preferred
        batch size is the emulated scheduler's largest batch, 1 when it does not batch; its
        queue policy holds the queue limit).
        """
        return {
            "name": self.name,
            "platform": "",
            "backend": self.backend,
            "runtime": "",
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
                {"name": f"{self.name}_0", "kind": "KIND_CPU", "count": instances, "gpus": []}
            ],
            "dynamic_batching": {
                "preferred_batch_size": [batcher_max_batch_size],
                "max_queue_delay_microseconds": round(max_queue_delay_ms * 1000),
                "preserve_ordering": False,
                "default_queue_policy": {
                    "timeout_action": "REJECT",
                    "default_timeout_microseconds": 0,
                    "allow_timeout_override": False,
                    "max_queue_size": max_queue_size,
                },
            },
            "default_model_filename": "model.py",
            "parameters": {},
        }

    def validate(self, request: InferRequest) -> int:
        """Check a request against the signature; return its batch size (rows).

        The messages and their order are tritonserver 2.51's (checked by
        e2e/test_conformance.py): most carry the request id, and input names are listed in
        the order Triton's map of the request's inputs yields them (reversed).
        """
        prefix = f"[request id: {request.request_id or '<id_unknown>'}] "
        expected = {tensor.name: tensor for tensor in self.inputs}
        given = list(reversed(list(request.inputs)))
        if len(given) != len(expected):
            missing = [name for name in expected if name not in request.inputs]
            raise ProtocolError(
                f"{prefix}expected {len(expected)} inputs but got {len(given)} inputs for "
                f"model '{self.name}'. Got input(s) {_name_list(given)}, but missing required "
                f"input(s) {_missing_list(missing)}. Please provide all required input(s)."
            )
        unknown = [name for name in given if name not in expected]
        if unknown:
            raise ProtocolError(
                f"unexpected inference input '{unknown[0]}' for model '{self.name}'"
            )
        batch = request.inputs[given[0]].shape[0] if request.inputs[given[0]].shape else 0
        if batch < 1 or batch > self.max_batch_size:
            raise ProtocolError(
                f"{prefix}inference request batch-size must be <= {self.max_batch_size} for "
                f"'{self.name}'"
            )
        for name in given:
            spec = expected[name]
            datatype = request.datatypes[name]
            if datatype != spec.datatype:
                raise ProtocolError(
                    f"{prefix}inference input '{name}' data-type is '{datatype}', but model "
                    f"'{self.name}' expects '{spec.datatype}'"
                )
            shape = request.inputs[name].shape
            if len(shape) != len(spec.dims) + 1 or tuple(shape[1:]) != spec.dims:
                raise ProtocolError(
                    f"{prefix}unexpected shape for input '{name}' for model '{self.name}'. "
                    f"Expected [-1,{','.join(str(dim) for dim in spec.dims)}], got "
                    f"[{','.join(str(dim) for dim in shape)}]. {_BATCH_DIMENSION_NOTE}"
                )
            if shape[0] != batch:
                raise ProtocolError(
                    f"{prefix}inputs of model '{self.name}' must all have the same batch size"
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
