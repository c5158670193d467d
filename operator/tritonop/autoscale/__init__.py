"""Autoscaling on Triton's own signals: metrics in, policy decision out."""
