"""A Triton model repository whose models behave like the emulator's.

Each model is Triton's `simple` add/sub model in the python backend (`triton_model.py`),
configured from the same `ServiceSettings` the emulator takes, so one scenario description
drives either data plane:

* `instances` -> `instance_group [{count: N, kind: KIND_CPU}]` (one stub process each);
* `max_batch_size` (requests per execution; 1 = no batching) -> the dynamic batcher's
  `preferred_batch_size: [N]`: Triton's batcher then starts an execution as soon as it can
  take N requests, or whatever is queued when an instance is free and the delay is over, as
  the emulator's scheduler does. The model's own `max_batch_size` stays 8 rows (simple's);
* `max_queue_delay_ms` -> `max_queue_delay_microseconds`;
* `max_queue_size` -> `default_queue_policy.max_queue_size` (0 = unbounded);
* `service_time_ms`, `service_time_cv`, `batch_overhead`, `error_rate` and the load delay ->
  model `parameters` read by the model at load time.

The dynamic batcher section is always written (also for N = 1): the queue policy lives in it,
and with it Triton's queue (and `nv_inference_pending_request_count`) is the scheduler's
queue in every configuration, as in the emulator.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from e2e.tritonsim.emulator import ServiceSettings
from e2e.tritonsim.models import SIMPLE_INPUTS, SIMPLE_OUTPUTS, AddSubModel, TensorSpec

MODEL_SOURCE = Path(__file__).with_name("triton_model.py")

#: Rows one request may carry (simple's max_batch_size); the batcher cannot exceed it either.
MODEL_MAX_BATCH_SIZE = AddSubModel("simple").max_batch_size


@dataclass(frozen=True)
class ModelSpec:
    """One model of the repository: a name and how it serves (and fails)."""

    name: str
    service: ServiceSettings = field(default_factory=ServiceSettings)
    load_delay_s: float = 0.0
    """Extra seconds the model takes to load (its initialize() sleeps), like the emulator's
    --load-delay: a large model's load, on top of the stub's own start (about a second)."""
    seed: int | None = None

    def __post_init__(self) -> None:
        self.service.replica_config()  # the emulator's validation and messages
        if not 1 <= self.service.max_batch_size <= MODEL_MAX_BATCH_SIZE:
            raise ValueError(
                f"max_batch_size must be between 1 and {MODEL_MAX_BATCH_SIZE} (simple's rows "
                f"per request, which bound Triton's batcher), got {self.service.max_batch_size}"
            )
        if self.load_delay_s < 0:
            raise ValueError(f"load_delay_s must be >= 0, got {self.load_delay_s}")


def _tensor(spec: TensorSpec) -> str:
    dims = ", ".join(str(dim) for dim in spec.dims)
    return f'  {{ name: "{spec.name}" data_type: {spec.config_type} dims: [ {dims} ] }}'


def model_config(spec: ModelSpec) -> str:
    """The model's `config.pbtxt` (protobuf text format)."""
    service = spec.service
    parameters = {
        "service_time_ms": service.service_time_ms,
        "service_time_cv": service.service_time_cv,
        "batch_overhead": service.batch_overhead,
        "error_rate": service.error_rate,
        "load_delay_s": spec.load_delay_s,
    }
    if spec.seed is not None:
        parameters["seed"] = spec.seed
    lines = [
        f'name: "{spec.name}"',
        'backend: "python"',
        f"max_batch_size: {MODEL_MAX_BATCH_SIZE}",
        "input [",
        ",\n".join(_tensor(tensor) for tensor in SIMPLE_INPUTS),
        "]",
        "output [",
        ",\n".join(_tensor(tensor) for tensor in SIMPLE_OUTPUTS),
        "]",
        f"instance_group [ {{ count: {service.instances} kind: KIND_CPU }} ]",
        "dynamic_batching {",
        f"  preferred_batch_size: [ {service.max_batch_size} ]",
        f"  max_queue_delay_microseconds: {round(service.max_queue_delay_ms * 1000)}",
        f"  default_queue_policy {{ max_queue_size: {service.max_queue_size} }}",
        "}",
    ]
    lines += [
        f'parameters {{ key: "{key}" value {{ string_value: "{value}" }} }}'
        for key, value in parameters.items()
    ]
    return "\n".join(lines) + "\n"


def write_model(root: Path, spec: ModelSpec) -> Path:
    """Write (or replace) one model directory under `root`; returns it."""
    directory = root / spec.name
    version = directory / "1"
    version.mkdir(parents=True, exist_ok=True)
    (directory / "config.pbtxt").write_text(model_config(spec))
    shutil.copyfile(MODEL_SOURCE, version / "model.py")
    return directory


def write_repository(root: Path, models: Iterable[ModelSpec]) -> Path:
    """A model repository at `root` holding exactly `models` (other entries are removed)."""
    root.mkdir(parents=True, exist_ok=True)
    wanted = {spec.name: spec for spec in models}
    for entry in root.iterdir():
        if entry.name not in wanted:
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    for spec in wanted.values():
        write_model(root, spec)
    return root
