"""Targets: where versions run and how traffic is split (local processes, Kubernetes)."""
