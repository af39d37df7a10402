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


def locate_binaries(with_argo: bool = True) -> Binaries:
    """Finds the cached binaries, or raises naming what is missing and the command to build it."""
    versions = read_versions()
    root = cache_dir()

    def comp(name: str, key: str) -> Path:
        return root / f"{name}-{versions[key]}"

    etcd = comp("etcd", "ETCD_VERSION")
    kube = comp("kubernetes", "KUBERNETES_VERSION")
    kwok = comp("kwok", "KWOK_VERSION")
    argo = comp("argo", "ARGO_VERSION")
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
    missing = [str(p) for p in executables if not os.access(p, os.X_OK)]
    missing += [str(p) for p in folders if not p.is_dir()]
    if missing:
        raise MissingPieceError(
            "the e2e test bed binaries are not built: missing "
            + ", ".join(missing)
            + f". Run `{BUILD_SCRIPT}` (cache: {root}; set GATEKEEPER_TESTBED_CACHE to move it)."
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


def helm_binary() -> Path:
    """The pinned helm, built by the same script, for tests of the charts."""
    versions = read_versions()
    helm = cache_dir() / f"helm-{versions['HELM_VERSION']}" / "bin" / "helm"
    if not os.access(helm, os.X_OK):
        raise MissingPieceError(f"helm is not built: missing {helm}. Run `{BUILD_SCRIPT} helm`.")
    return helm
