#!/usr/bin/env python3
"""Write a tiny real Triton model repository: an ONNX add/sub model on CPU.

    python e2e/kind/make_model.py OUT_DIR [--name simple]

OUT_DIR/<name>/config.pbtxt and OUT_DIR/<name>/1/model.onnx: two INT32 inputs of 16 elements
(INPUT0, INPUT1) and two outputs, OUTPUT0 = INPUT0 + INPUT1 and OUTPUT1 = INPUT0 - INPUT1,
batching up to 8 rows. That is the signature of Triton's own `simple` example model, which the
e2e suite's Triton emulator and load generator also speak, so the same clients and checks work
against the emulator and against a real Triton. The default name is therefore `simple`.

Why ONNX: Triton's onnxruntime backend runs it on CPU in the stock image, the model is a few
hundred bytes, and the `onnx` package builds it without any ML framework. The IR version and
opset are pinned low so every Triton release with an onnxruntime backend of the last years
loads it. Needs `pip install onnx` (the project's `kind` extra).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx
from onnx import TensorProto, helper

ELEMENTS = 16
MAX_BATCH_SIZE = 8
#: ONNX IR version 8 / opset 13: loadable by onnxruntime 1.10 and newer.
IR_VERSION = 8
OPSET = 13


def build_model() -> onnx.ModelProto:
    """The add/sub graph; the leading dimension is the (dynamic) batch."""
    shape: list[int | str] = ["batch", ELEMENTS]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT32, shape)
        for name in ("INPUT0", "INPUT1")
    ]
    outputs = [
        helper.make_tensor_value_info(name, TensorProto.INT32, shape)
        for name in ("OUTPUT0", "OUTPUT1")
    ]
    graph = helper.make_graph(
        [
            helper.make_node("Add", ["INPUT0", "INPUT1"], ["OUTPUT0"], name="add"),
            helper.make_node("Sub", ["INPUT0", "INPUT1"], ["OUTPUT1"], name="sub"),
        ],
        "add_sub",
        inputs,
        outputs,
    )
    model = helper.make_model(
        graph, producer_name="tritonop-e2e-kind", opset_imports=[helper.make_opsetid("", OPSET)]
    )
    model.ir_version = IR_VERSION
    onnx.checker.check_model(model, full_check=True)
    return model


def model_config(name: str) -> str:
    """Triton's config.pbtxt: CPU instances explicitly, dynamic batching on."""
    tensors = {
        "input": ("INPUT0", "INPUT1"),
        "output": ("OUTPUT0", "OUTPUT1"),
    }
    sections = []
    for section, names in tensors.items():
        entries = ",\n".join(
            f'  {{ name: "{tensor}" data_type: TYPE_INT32 dims: [ {ELEMENTS} ] }}'
            for tensor in names
        )
        sections.append(f"{section} [\n{entries}\n]")
    return (
        f'name: "{name}"\n'
        'backend: "onnxruntime"\n'
        f"max_batch_size: {MAX_BATCH_SIZE}\n" + "\n".join(sections) + "\n"
        "instance_group [ { kind: KIND_CPU count: 1 } ]\n"
        "dynamic_batching { }\n"
    )


def write_repository(out_dir: Path, name: str) -> Path:
    """Write the model into out_dir (a Triton model repository); returns the model's directory."""
    model_dir = out_dir / name
    (model_dir / "1").mkdir(parents=True, exist_ok=True)
    onnx.save(build_model(), str(model_dir / "1" / "model.onnx"))
    (model_dir / "config.pbtxt").write_text(model_config(name))
    return model_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out_dir", type=Path, help="model repository directory to write into")
    parser.add_argument("--name", default="simple", help="model name (default: simple)")
    args = parser.parse_args(argv)
    model_dir = write_repository(args.out_dir, args.name)
    print(f"wrote {model_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
