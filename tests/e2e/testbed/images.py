"""The bed's image registry: what a container without a `command` runs, as a real image would.

A Deployment derived by the Kubernetes target differs from stable by its image (and version
label) only, so the bed gives images behaviour the way a registry does. An image is an
entrypoint, a default cmd and env (Docker's ENTRYPOINT, CMD and ENV); the kubelet runs a
container as Kubernetes does:

- with a `command`: command + args, the image ignored (as the bed always did);
- without one: the image's entrypoint + the container's `args`, else the image's cmd;
  `$(VAR)` is expanded in the container's args only, never in the image's own argv;
- the image's env comes first, the container's env overrides it;
- an image the registry does not hold: the container waits in `ErrImagePull`, then
  `ImagePullBackOff`, until one is registered under that name.

    bed.images.register("demo:v2-slow", demo_image(latency_ms=400))
    bed.images.register("tool:1", Image(entrypoint=("python", "-m", "tool")))

`python`/`python3` as the first word is the repository's interpreter (the repository is the
image). The bed starts with the demo app's images (`DEMO_IMAGES`) for v1 to v4:

| image | behaviour |
| --- | --- |
| `demo:vN` | the demo app, healthy (every request 200) |
| `demo:vN-bad` | 8% of requests answer 500 |
| `demo:vN-never-ready` | listens, but its readiness path (`/healthz`) answers 503 forever |
| `demo:vN-crash` | exits with code 1 at once (a crash loop) |
| `demo:vN-crash-later` | healthy for 15 s, then exits with code 1 (again after each restart) |
| `demo:vN-slow-start` | healthy, but takes 3 s to start each time (a restart refuses connections) |

The demo images read their identity from the environment (the pod's Downward API, as
`apps.image_container` declares it): `APP`, `VERSION`, `POD_IP`, and `PORT` (default 8080).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from tests.e2e.testbed.paths import REPO_ROOT

LAUNCHER = "tests.e2e.testbed.demo_image"
DEMO_VERSIONS = ("v1", "v2", "v3", "v4")
BAD_ERROR_RATE = 0.08
CRASH_LATER_S = 15.0
SLOW_START_S = 3.0


@dataclass(frozen=True)
class Image:
    """What a container of this image runs when the pod spec gives no `command`."""

    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)

    def argv(self, container_args: Sequence[str] | None) -> list[str]:
        """Kubernetes' rule: the container's args replace the image's cmd, never its
        entrypoint."""
        return [*self.entrypoint, *(self.cmd if container_args is None else container_args)]


class ImageRegistry:
    """Image name -> Image; thread-safe (the kubelet reads it from its pod threads)."""

    def __init__(self, images: Mapping[str, Image] | None = None) -> None:
        self._images: dict[str, Image] = dict(images or {})
        self._lock = threading.Lock()

    def register(
        self,
        ref: str,
        image: Image | Sequence[str],
        *,
        cmd: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Registers (or replaces) ``ref``: an Image, or an entrypoint argv with cmd and env."""
        if isinstance(image, str):
            raise TypeError(f"image {ref}: give the entrypoint as a list of words, not {image!r}")
        if not isinstance(image, Image):
            image = Image(tuple(image), tuple(cmd), dict(env or {}))
        if not image.entrypoint and not image.cmd:
            raise ValueError(f"image {ref}: give an entrypoint or a cmd")
        with self._lock:
            self._images[ref] = image

    def lookup(self, ref: str) -> Image | None:
        with self._lock:
            return self._images.get(ref)

    def __contains__(self, ref: object) -> bool:
        with self._lock:
            return ref in self._images

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._images)


def demo_image(
    *,
    error_rate: float = 0.0,
    latency_ms: float = 5.0,
    never_ready: bool = False,
    crash: bool = False,
    exit_after_s: float | None = None,
    start_delay_s: float = 0.0,
    extra_args: Sequence[str] = (),
) -> Image:
    """The demo app (gatekeeper.targets.local.demo_service) behind the launcher that reads
    its identity from the environment; the flags say how this image behaves."""
    cmd = ["--error-rate", f"{error_rate:g}", "--latency-ms", f"{latency_ms:g}"]
    if never_ready:
        cmd.append("--never-ready")
    if crash:
        cmd.append("--crash")
    if exit_after_s is not None:
        cmd += ["--exit-after", f"{exit_after_s:g}"]
    if start_delay_s > 0:
        cmd += ["--start-delay", f"{start_delay_s:g}"]
    return Image(
        entrypoint=("python", "-m", LAUNCHER),
        cmd=(*cmd, *extra_args),
        # The launcher lives in the repository's tests, which the venv does not install.
        env={"PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"},
    )


def _demo_images() -> dict[str, Image]:
    found: dict[str, Image] = {}
    for version in DEMO_VERSIONS:
        found[f"demo:{version}"] = demo_image()
        found[f"demo:{version}-bad"] = demo_image(error_rate=BAD_ERROR_RATE)
        found[f"demo:{version}-never-ready"] = demo_image(never_ready=True)
        found[f"demo:{version}-crash"] = demo_image(crash=True)
        found[f"demo:{version}-crash-later"] = demo_image(exit_after_s=CRASH_LATER_S)
        found[f"demo:{version}-slow-start"] = demo_image(start_delay_s=SLOW_START_S)
    return found


DEMO_IMAGES: Mapping[str, Image] = _demo_images()


def default_registry() -> ImageRegistry:
    """A registry holding the demo app's images."""
    return ImageRegistry(DEMO_IMAGES)
