"""A local Kubernetes and Argo Workflows test bed: real control plane, kwok nodes, no Docker."""

from tests.e2e.testbed.bed import BedError, ClusterBed, start_bed
from tests.e2e.testbed.kubelet import APP_LABEL, APP_LABEL_VALUE
from tests.e2e.testbed.traffic import TrafficResult

__all__ = ["APP_LABEL", "APP_LABEL_VALUE", "BedError", "ClusterBed", "TrafficResult", "start_bed"]
