"""The demo images' entrypoint: the demo app, told who it is by its environment.

    APP=shop VERSION=v2 POD_IP=10.128.0.7 python -m tests.e2e.testbed.demo_image \
        [--error-rate 0.08] [--latency-ms 5] [--never-ready | --crash | --exit-after 15] \
        [--start-delay 3] [demo_service flags...]

As a real image reads the Downward API, it takes `APP`, `VERSION`, `POD_IP` (the address to
listen on) and `PORT` (default 8080) from the environment, and runs
`gatekeeper.targets.local.demo_service`. The flags give an image its behaviour:

- `--never-ready`: listens on the port, but answers 503 to everything, `/healthz` included
  (an app waiting forever on a dependency), so a readiness probe never passes;
- `--crash`: prints an error and exits with code 1 at once;
- `--exit-after S`: serves normally, then exits with code 1 after S seconds;
- `--start-delay S`: takes S seconds to start (loading, warming a cache) before it listens,
  at every start: a restarted pod refuses connections that long.

On SIGTERM it keeps serving for `--drain` seconds (default 1.5) before it closes, as an app
behind a preStop hook does: the data plane takes a moment to stop sending it requests
(endpoints, then Traefik), and an app that closed at once would answer them with 502s. Keep
the pod's terminationGracePeriodSeconds above it (the bed caps it at 3 s).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

from gatekeeper.targets.local import demo_service


class _NotReady(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b"waiting for the database\n"
        self.send_response(503)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_HEAD = do_GET


def _env(name: str, default: str | None = None) -> str:
    value = os.environ.get(name, default)
    if not value:
        print(f"demo image: the environment has no {name}", file=sys.stderr, flush=True)
        sys.exit(2)
    return value


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="demo image", add_help=False)
    p.add_argument("--never-ready", action="store_true")
    p.add_argument("--crash", action="store_true")
    p.add_argument("--exit-after", type=float, default=None)
    p.add_argument("--drain", type=float, default=1.5)
    p.add_argument("--start-delay", type=float, default=0.0)
    own, rest = p.parse_known_args(argv)
    app, version = _env("APP"), _env("VERSION")
    host, port = _env("POD_IP"), int(_env("PORT", "8080"))
    if own.start_delay > 0:
        print(f"demo image: {app} {version} starting ({own.start_delay:g}s)", flush=True)
        time.sleep(own.start_delay)
    if own.crash:
        print(f"demo image: {app} {version} cannot start: boom", file=sys.stderr, flush=True)
        return 1
    if own.never_ready:
        print(f"demo image: {app} {version} on {host}:{port}, never ready", flush=True)
        server = ThreadingHTTPServer((host, port), _NotReady)
        server.daemon_threads = True
        demo_service.serve(server)
        return 0
    if own.exit_after is not None:
        delay = own.exit_after

        def crash() -> None:
            print(f"demo image: {app} {version} crashes after {delay:g}s", flush=True)
            os._exit(1)

        timer = threading.Timer(delay, crash)
        timer.daemon = True  # a SIGTERM before it fires ends the process as usual
        timer.start()
    # main() serves through this name
    demo_service.serve = _draining(own.drain)  # type: ignore[assignment]
    return demo_service.main(
        ["--app", app, "--version", version, "--host", host, "--port", str(port), *rest]
    )


def _draining(drain_s: float) -> Callable[[ThreadingHTTPServer], None]:
    def serve(server: ThreadingHTTPServer) -> None:
        """Serve until SIGTERM or SIGINT, then ``drain_s`` more seconds."""

        def later() -> None:
            time.sleep(drain_s)
            server.shutdown()

        def stop(signum: int, frame: FrameType | None) -> None:
            threading.Thread(target=later, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        try:
            server.serve_forever(poll_interval=0.1)
        finally:
            server.server_close()

    return serve


if __name__ == "__main__":
    sys.exit(main())
