"""End-to-end tests and their infrastructure: a real control plane, a Triton emulator, load."""
