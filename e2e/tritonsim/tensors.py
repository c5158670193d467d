"""KServe v2 inference request/response bodies, with Triton's binary tensor extension.

Pure functions over bytes: the HTTP layer hands in the raw body and the value of the
`Inference-Header-Content-Length` header and gets back plain data, or the reverse for
responses. This is the part of the protocol that `tritonclient.http` exercises hardest (its
defaults send inputs as binary and ask for every output in binary), so it lives apart from
the server and is tested on its own.

The binary extension in short: a body is a JSON header of N bytes followed by raw tensor
bytes; N travels in `Inference-Header-Content-Length`; every tensor carried in the binary
part says how many bytes it occupies in `parameters.binary_data_size`, in the order the
tensors appear in the JSON header. Without the header the whole body is JSON and tensors
carry their elements in `data`.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

HEADER_LENGTH = "Inference-Header-Content-Length"

Array = npt.NDArray[Any]

#: KServe v2 datatypes that map one-to-one onto a little-endian numpy dtype. BYTES (length
#: prefixed strings) and BF16 have no such mapping and are rejected with a clear message,
#: since no emulated model uses them.
NUMPY_DTYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}


class ProtocolError(Exception):
    """A request Triton would refuse; carries the HTTP status Triton answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of the request's `outputs` list."""

    name: str
    binary: bool


@dataclass(frozen=True)
class InferRequest:
    """A decoded inference request: tensors as numpy arrays, plus what to send back."""

    inputs: dict[str, Array]
    datatypes: dict[str, str]
    request_id: str | None = None
    requested_outputs: tuple[RequestedOutput, ...] | None = None
    """None means every output of the model, in the request-level binary mode."""
    binary_data_output: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputTensor:
    """One output to encode: its name, KServe datatype, values and transfer mode."""

    name: str
    datatype: str
    value: Array
    binary: bool


def decompress(body: bytes, content_encoding: str | None) -> bytes:
    """Undo the request compression tritonclient applies when asked to (gzip or deflate)."""
    if not content_encoding or content_encoding == "identity":
        return body
    try:
        if content_encoding == "gzip":
            return gzip.decompress(body)
        if content_encoding == "deflate":
            return zlib.decompress(body)
    except (OSError, zlib.error) as error:
        raise ProtocolError(f"failed to decompress the request body: {error}") from error
    raise ProtocolError(f"unsupported Content-Encoding '{content_encoding}'")


def compress(body: bytes, accept_encoding: str | None) -> tuple[bytes, str | None]:
    """Compress a response the way the client asked (tritonclient asks for one scheme)."""
    accepted = {part.split(";")[0].strip() for part in (accept_encoding or "").split(",")}
    if "gzip" in accepted:
        return gzip.compress(body), "gzip"
    if "deflate" in accepted:
        return zlib.compress(body), "deflate"
    return body, None


def _parse_header_length(header_length: str | None, body_length: int) -> int | None:
    if header_length is None:
        return None
    try:
        length = int(header_length)
    except ValueError as error:
        raise ProtocolError(f"invalid {HEADER_LENGTH} '{header_length}'") from error
    if length < 0 or length > body_length:
        raise ProtocolError(
            f"{HEADER_LENGTH} {length} is outside the request body of {body_length} bytes"
        )
    return length


def _shape_of(tensor: dict[str, Any], name: str) -> tuple[int, ...]:
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(
        isinstance(dim, int) and not isinstance(dim, bool) and dim >= 0 for dim in shape
    ):
        raise ProtocolError(f"input '{name}' has an invalid shape: {shape!r}")
    return tuple(shape)


def _dtype_of(datatype: object, name: str) -> np.dtype[Any]:
    if not isinstance(datatype, str) or datatype not in NUMPY_DTYPES:
        raise ProtocolError(f"input '{name}' has an unsupported datatype: {datatype!r}")
    return NUMPY_DTYPES[datatype]


def decode_infer_request(body: bytes, header_length: str | None) -> InferRequest:
    """Decode an infer request body (JSON only, or JSON header + binary tensor data)."""
    json_length = _parse_header_length(header_length, len(body))
    json_part = body if json_length is None else body[:json_length]
    binary_part = memoryview(body)[len(json_part) :]
    try:
        header = json.loads(json_part)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        # tritonserver answers an unparsable body with 500, not 400.
        raise ProtocolError(f"failed to parse the request JSON buffer: {error}", 500) from error
    if not isinstance(header, dict):
        raise ProtocolError("the inference request must be a JSON object")
    raw_inputs = header.get("inputs")
    if not isinstance(raw_inputs, list):
        raise ProtocolError("the inference request must have a list of 'inputs'")

    inputs: dict[str, Array] = {}
    datatypes: dict[str, str] = {}
    offset = 0
    for tensor in raw_inputs:
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise ProtocolError("every input needs a 'name'")
        name: str = tensor["name"]
        if name in inputs:
            raise ProtocolError(f"input '{name}' is given more than once")
        shape = _shape_of(tensor, name)
        dtype = _dtype_of(tensor.get("datatype"), name)
        elements = int(np.prod(shape, dtype=np.int64))
        parameters = tensor.get("parameters") or {}
        binary_size = parameters.get("binary_data_size")
        if binary_size is not None:
            if not isinstance(binary_size, int) or binary_size < 0:
                raise ProtocolError(f"input '{name}' has an invalid binary_data_size")
            expected = elements * dtype.itemsize
            if binary_size != expected:
                raise ProtocolError(
                    f"input '{name}' has {binary_size} bytes of binary data, but shape "
                    f"{list(shape)} of {tensor['datatype']} needs {expected}"
                )
            if offset + binary_size > len(binary_part):
                raise ProtocolError(f"the request body ends inside the data of input '{name}'")
            raw = binary_part[offset : offset + binary_size]
            offset += binary_size
            array = np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
        elif "data" in tensor:
            try:
                array = np.asarray(tensor["data"], dtype=dtype)
            except (TypeError, ValueError) as error:
                raise ProtocolError(f"input '{name}' has data of the wrong type") from error
            if array.size != elements:
                raise ProtocolError(
                    f"input '{name}' has {array.size} elements, but shape {list(shape)} "
                    f"needs {elements}"
                )
            array = array.reshape(shape)
        else:
            raise ProtocolError(f"input '{name}' has neither 'data' nor binary data")
        inputs[name] = array
        datatypes[name] = str(tensor["datatype"])
    if offset != len(binary_part):
        raise ProtocolError(
            f"the request carries {len(binary_part) - offset} bytes of binary data that no "
            "input claims"
        )

    parameters = header.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError("request 'parameters' must be an object")
    binary_data_output = bool(parameters.get("binary_data_output", False))
    requested: tuple[RequestedOutput, ...] | None = None
    raw_outputs = header.get("outputs")
    if raw_outputs is not None:
        if not isinstance(raw_outputs, list):
            raise ProtocolError("request 'outputs' must be a list")
        entries = []
        for output in raw_outputs:
            if not isinstance(output, dict) or not isinstance(output.get("name"), str):
                raise ProtocolError("every requested output needs a 'name'")
            output_parameters = output.get("parameters") or {}
            if "classification" in output_parameters:
                raise ProtocolError("the classification extension is not emulated")
            binary = bool(output_parameters.get("binary_data", binary_data_output))
            entries.append(RequestedOutput(output["name"], binary))
        requested = tuple(entries)
    request_id = header.get("id")
    return InferRequest(
        inputs=inputs,
        datatypes=datatypes,
        request_id=str(request_id) if request_id is not None else None,
        requested_outputs=requested,
        binary_data_output=binary_data_output,
        parameters=parameters,
    )


def encode_infer_response(
    model_name: str, model_version: str, request_id: str | None, outputs: list[OutputTensor]
) -> tuple[bytes, int | None]:
    """Encode a response; returns the body and the JSON header length (None: all JSON)."""
    described: list[dict[str, Any]] = []
    binary_chunks: list[bytes] = []
    for output in outputs:
        entry: dict[str, Any] = {
            "name": output.name,
            "datatype": output.datatype,
            "shape": list(output.value.shape),
        }
        if output.binary:
            raw = np.ascontiguousarray(output.value, dtype=NUMPY_DTYPES[output.datatype])
            chunk = raw.tobytes()
            entry["parameters"] = {"binary_data_size": len(chunk)}
            binary_chunks.append(chunk)
        else:
            entry["data"] = output.value.reshape(-1).tolist()
        described.append(entry)
    response: dict[str, Any] = {"model_name": model_name, "model_version": model_version}
    if request_id is not None:
        response["id"] = request_id
    response["outputs"] = described
    header = json.dumps(response, separators=(",", ":")).encode()
    if not binary_chunks:
        return header, None
    return header + b"".join(binary_chunks), len(header)
