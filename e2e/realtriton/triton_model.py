"""Triton's `simple` model for the python backend, with a configurable service time.

This file is not imported by the project: `repository.write_repository` copies it as
`<model>/1/model.py` into a model repository, and tritonserver's python backend runs it in its
stub process. It serves the signature of Triton's `simple` example (INPUT0, INPUT1 INT32
[-1,16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, int32 wraparound), the one
the emulator (`e2e/tritonsim`) serves, so the same load generator and checks work on both data
planes.

Timing follows the emulator's queueing model (`tritonop.sim.replica.ReplicaModel._start`),
with its parameters read from the model configuration's `parameters`: one execution of n
requests sleeps `base * (1 + batch_overhead * (n - 1))`, where base is `service_time_ms` or,
with `service_time_cv > 0`, lognormal with that mean and coefficient of variation. Sleeping
rather than computing keeps many servers on two cores: the stub process is idle while it
"executes", and Triton's scheduler, queue and counters are the real ones around it.

`error_rate` is the fraction of executions that raise after their service time (1 = every
one): a model that fails, for the failure counters (Triton counts them reason BACKEND).
`load_delay_s` makes initialize() take that long: a model that loads slowly.
"""

import json
import math
import random
import time
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils  # type: ignore[import-not-found]


def _parameter(config: dict[str, Any], name: str, default: float) -> float:
    entry = config.get("parameters", {}).get(name)
    return float(entry["string_value"]) if entry else default


class TritonPythonModel:
    """Triton's python backend entry point (the class name is the backend's contract)."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        self.service_time_s = _parameter(config, "service_time_ms", 50.0) / 1000.0
        self.service_time_cv = _parameter(config, "service_time_cv", 0.0)
        self.batch_overhead = _parameter(config, "batch_overhead", 0.1)
        self.error_rate = _parameter(config, "error_rate", 0.0)
        time.sleep(_parameter(config, "load_delay_s", 0.0))  # a large model's load
        seed = config.get("parameters", {}).get("seed")
        # One stream per instance: instances are separate processes.
        self.rng = random.Random(
            None if seed is None else f"{seed['string_value']}/{args['model_instance_name']}"
        )
        if self.service_time_cv > 0:
            sigma_squared = math.log1p(self.service_time_cv**2)
            self.sigma = math.sqrt(sigma_squared)
            self.mu = math.log(self.service_time_s) - sigma_squared / 2.0

    def _base_s(self) -> float:
        if self.service_time_cv > 0:
            return self.rng.lognormvariate(self.mu, self.sigma)
        return self.service_time_s

    def execute(self, requests: list[Any]) -> list[Any]:
        time.sleep(self._base_s() * (1.0 + self.batch_overhead * (len(requests) - 1)))
        if self.error_rate > 0 and self.rng.random() < self.error_rate:
            raise pb_utils.TritonModelException("model error injected (error_rate parameter)")
        responses = []
        for request in requests:
            first = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
            second = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
            with np.errstate(over="ignore"):
                total = (first.astype(np.int32) + second.astype(np.int32)).astype(np.int32)
                difference = (first.astype(np.int32) - second.astype(np.int32)).astype(np.int32)
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("OUTPUT0", total),
                        pb_utils.Tensor("OUTPUT1", difference),
                    ]
                )
            )
        return responses
