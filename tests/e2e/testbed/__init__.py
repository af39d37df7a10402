"""A local Kubernetes and Argo Workflows test bed: real control plane, kwok nodes, no Docker."""

from tests.e2e.testbed.bed import BedError, ClusterBed, start_bed

__all__ = ["BedError", "ClusterBed", "start_bed"]
