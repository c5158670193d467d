"""Discrete-event simulation of Triton replicas under a load trace, driving the autoscaling policy.

Pure: no clocks, no files, no network. `replica` models one Triton server; `traces` makes and
parses arrival traces; `engine` runs a whole service under a policy; `baselines` holds the
policies the operator is compared against (Kubernetes HPA, Knative KPA, static, oracle).
"""
