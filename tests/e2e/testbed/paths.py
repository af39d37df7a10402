"""Where the test bed finds its pinned versions, cached binaries and reference CRDs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
VERSIONS_FILE = REPO_ROOT / "scripts" / "testbed" / "versions.env"
BUILD_SCRIPT = "scripts/testbed-build"


class MissingPieceError(RuntimeError):
    """A binary or reference file the bed needs is absent; the message says how to get it."""


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, value = line.split("=", 1)
        versions[key.strip()] = value.strip()
    return versions


def cache_dir() -> Path:
    configured = os.environ.get("GATEKEEPER_TESTBED_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "gatekeeper-testbed"


def shared_dir() -> Path:
    """The reference data beside the repository (`<repo>/../shared`)."""
    return REPO_ROOT.parent / "shared"


@dataclass(frozen=True)
class Binaries:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kwok: Path
    kwok_stages: Path
    workflow_controller: Path
    argo: Path
    argo_minimal_crds: Path
    versions: dict[str, str]
    traefik: Path | None = None
    prometheus: Path | None = None


def locate_binaries(with_argo: bool = True, with_data_plane: bool = False) -> Binaries:
    """Finds the cached binaries, or raises naming what is missing and the command to build it."""
    versions = read_versions()
    root = cache_dir()

    def comp(name: str, key: str) -> Path:
        return root / f"{name}-{versions[key]}"

    etcd = comp("etcd", "ETCD_VERSION")
    kube = comp("kubernetes", "KUBERNETES_VERSION")
    kwok = comp("kwok", "KWOK_VERSION")
    argo = comp("argo", "ARGO_VERSION")
    traefik = comp("traefik", "TRAEFIK_VERSION") / "bin" / "traefik"
    prometheus = comp("prometheus", "PROMETHEUS_VERSION") / "bin" / "prometheus"
    found = Binaries(
        etcd=etcd / "bin" / "etcd",
        kube_apiserver=kube / "bin" / "kube-apiserver",
        kube_controller_manager=kube / "bin" / "kube-controller-manager",
        kube_scheduler=kube / "bin" / "kube-scheduler",
        kwok=kwok / "bin" / "kwok",
        kwok_stages=kwok / "stages",
        workflow_controller=argo / "bin" / "workflow-controller",
        argo=argo / "bin" / "argo",
        argo_minimal_crds=argo / "crds" / "minimal",
        versions=versions,
        traefik=traefik if with_data_plane else None,
        prometheus=prometheus if with_data_plane else None,
    )
    executables = [
        found.etcd,
        found.kube_apiserver,
        found.kube_controller_manager,
        found.kube_scheduler,
        found.kwok,
    ]
    folders = [found.kwok_stages]
    if with_argo:
        executables += [found.workflow_controller, found.argo]
        folders.append(found.argo_minimal_crds)
    if with_data_plane:
        executables += [traefik, prometheus]
    missing = [str(p) for p in executables if not os.access(p, os.X_OK)]
    missing += [str(p) for p in folders if not p.is_dir()]
    if missing:
        plane_only = with_data_plane and set(missing) <= {str(traefik), str(prometheus)}
        raise MissingPieceError(
            "the e2e test bed binaries are not built: missing "
            + ", ".join(missing)
            + f". Run `{BUILD_SCRIPT}` (cache: {root}; set GATEKEEPER_TESTBED_CACHE to move it)."
            + (
                " GATEKEEPER_TESTBED_DATA_PLANE=0 starts the bed without Traefik and Prometheus."
                if plane_only
                else ""
            )
        )
    return found


def reference_crds() -> list[Path]:
    """The Argo and Gateway API CRD files shipped beside the repository."""
    shared = shared_dir()
    argo = sorted((shared / "argo" / "crds").glob("*.yaml"))
    gateway = sorted((shared / "gateway-api").glob("*.yaml"))
    if not argo or not gateway:
        raise MissingPieceError(
            f"reference CRDs not found under {shared} (expected argo/crds/*.yaml and "
            "gateway-api/*.yaml beside the repository)"
        )
    return argo + gateway


# The standard CRDs of the same Gateway API release that ../shared/gateway-api/ lacks and
# Traefik's provider watches (GRPCRoute, ReferenceGrant, BackendTLSPolicy); see their README.
SUPPLEMENTARY_GATEWAY_CRDS = Path(__file__).parent / "crds" / "gateway-api-v1.6.1"


def supplementary_gateway_crds() -> list[Path]:
    found = sorted(SUPPLEMENTARY_GATEWAY_CRDS.glob("*.yaml"))
    if not found:
        raise MissingPieceError(f"no Gateway API CRD files in {SUPPLEMENTARY_GATEWAY_CRDS}")
    return found


def helm_binary() -> Path:
    """The pinned helm, built by the same script, for tests of the charts."""
    versions = read_versions()
    helm = cache_dir() / f"helm-{versions['HELM_VERSION']}" / "bin" / "helm"
    if not os.access(helm, os.X_OK):
        raise MissingPieceError(f"helm is not built: missing {helm}. Run `{BUILD_SCRIPT} helm`.")
    return helm
