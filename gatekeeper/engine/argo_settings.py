"""Where argo-server is and how a release's workflow runs: options, environment, defaults.

| setting | option | environment | default |
| --- | --- | --- | --- |
| argo-server URL | `--argo-server` | `GATEKEEPER_ARGO_SERVER` | (required for `executor: argo`) |
| bearer token | | `GATEKEEPER_ARGO_TOKEN`, or a file in `GATEKEEPER_ARGO_TOKEN_FILE` | none |
| CA bundle / no TLS check | | `GATEKEEPER_ARGO_CA`, `GATEKEEPER_ARGO_INSECURE=1` | system CAs |
| namespace | `--argo-namespace` | `GATEKEEPER_ARGO_NAMESPACE` | `argo` |
| step image | `--workflow-image` | `GATEKEEPER_WORKFLOW_IMAGE` | the compiler's default |
| step ServiceAccount | | `GATEKEEPER_WORKFLOW_SERVICE_ACCOUNT` | the compiler's default |
| step env Secret | | `GATEKEEPER_WORKFLOW_ENV_SECRET` | none |

The step pods need the store and Prometheus: from the Secret named by
`GATEKEEPER_WORKFLOW_ENV_SECRET` (`GATEKEEPER_DB_URL`, `GATEKEEPER_PROMETHEUS_URL`), else the
run's own `--db` and `--prometheus` are passed to them as plain env. A token is never taken
from the command line.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from gatekeeper.domain.errors import InvalidInput

DEFAULT_NAMESPACE = "argo"


@dataclass(frozen=True)
class ArgoSettings:
    server: str
    namespace: str = DEFAULT_NAMESPACE
    token: str | None = None
    verify: bool | str = True
    image: str | None = None
    service_account: str | None = None
    env_secret: str | None = None
    step_env: Mapping[str, str] = field(default_factory=dict)  # extra env for every step pod
    poll_s: float = 5.0  # how often the follower reads the workflow without a watch event

    @classmethod
    def resolve(
        cls,
        server: str | None = None,
        namespace: str | None = None,
        image: str | None = None,
        step_env: Mapping[str, str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> ArgoSettings:
        """Options first, then the environment, then the defaults; InvalidInput naming what is
        missing or unreadable."""
        env = os.environ if environ is None else environ
        url = server or env.get("GATEKEEPER_ARGO_SERVER")
        if not url:
            raise InvalidInput(
                "executor argo: no argo-server URL; give --argo-server or GATEKEEPER_ARGO_SERVER "
                "(e.g. https://argo-server.argo:2746)"
            )
        if not url.startswith(("http://", "https://")):
            raise InvalidInput(f"argo-server URL {url!r} must start with http:// or https://")
        token = env.get("GATEKEEPER_ARGO_TOKEN") or None
        token_file = env.get("GATEKEEPER_ARGO_TOKEN_FILE")
        if token is None and token_file:
            try:
                token = Path(token_file).read_text().strip() or None
            except OSError as e:
                raise InvalidInput(
                    f"GATEKEEPER_ARGO_TOKEN_FILE {token_file!r} cannot be read: {e}"
                ) from e
        verify: bool | str = True
        if env.get("GATEKEEPER_ARGO_CA"):
            verify = env["GATEKEEPER_ARGO_CA"]
        elif env.get("GATEKEEPER_ARGO_INSECURE", "").lower() in ("1", "true", "yes"):
            verify = False
        return cls(
            server=url,
            namespace=namespace or env.get("GATEKEEPER_ARGO_NAMESPACE") or DEFAULT_NAMESPACE,
            token=token,
            verify=verify,
            image=image or env.get("GATEKEEPER_WORKFLOW_IMAGE") or None,
            service_account=env.get("GATEKEEPER_WORKFLOW_SERVICE_ACCOUNT") or None,
            env_secret=env.get("GATEKEEPER_WORKFLOW_ENV_SECRET") or None,
            step_env=dict(step_env or {}),
        )


def parse_env_pairs(pairs: list[str], option: str = "--step-env") -> dict[str, str]:
    """KEY=VALUE words into a mapping; InvalidInput naming a word without '='."""
    found: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InvalidInput(f"{option} {pair!r}: give KEY=VALUE")
        found[key.strip()] = value
    return found
