"""Pod addresses of the bed: one local address per pod, on which this machine answers.

Linux answers on every address of a `local` route: 127.0.0.0/8 is one out of the box. But the
API server refuses loopback addresses in EndpointSlices ("may not be in the loopback range"),
so kube-controller-manager could build no slice from pods on 127.x. The bed therefore adds a
`local` route of its own for a free /20 of 10.128.0.0/12 (`ip route add local <cidr> dev lo`,
which needs CAP_NET_ADMIN) and removes it when it stops. Without that right it falls back to
127.x addresses: the pods run and answer, but no EndpointSlice (hence no Gateway) reaches them.
`GATEKEEPER_TESTBED_POD_NETWORK` chooses: `auto` (default), `loopback`, or a CIDR to route.
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterable

POOL = ipaddress.IPv4Network("10.128.0.0/12")
PREFIX = 20
ENV = "GATEKEEPER_TESTBED_POD_NETWORK"


class PodNetwork:
    """Allocates pod addresses from one network; closing removes the route the bed added."""

    def __init__(self, network: ipaddress.IPv4Network, routed: bool, note: str = "") -> None:
        self.network = network
        self.routed = routed
        self.note = note
        self._hosts = list(network.hosts())
        self._cursor = 0
        self._in_use: set[str] = set()
        self._lock = threading.Lock()

    @property
    def loopback(self) -> bool:
        return self.network.is_loopback

    def allocate(self, ports: Iterable[int] = ()) -> str:
        """A free address of the network on which each of `ports` can be bound."""
        wanted = list(ports)
        with self._lock:
            for _ in range(len(self._hosts)):
                ip = str(self._hosts[self._cursor])
                self._cursor = (self._cursor + 1) % len(self._hosts)
                if ip not in self._in_use and all(_bindable(ip, p) for p in wanted):
                    self._in_use.add(ip)
                    return ip
        raise RuntimeError(f"no free pod address left in {self.network}")

    def release(self, ip: str) -> None:
        with self._lock:
            self._in_use.discard(ip)

    def close(self) -> None:
        if self.routed:
            self.routed = False
            _ip_route("del", self.network)


def open_pod_network() -> PodNetwork:
    choice = os.environ.get(ENV, "auto").strip() or "auto"
    if choice == "loopback":
        return _loopback(f"{ENV}=loopback")
    if choice != "auto":
        try:
            network = ipaddress.IPv4Network(choice)
        except ValueError as exc:
            raise ValueError(f"{ENV} must be 'auto', 'loopback' or an IPv4 CIDR: {exc}") from exc
        error = _ip_route("add", network)
        if error:
            raise RuntimeError(f"cannot route {network} locally: {error}")
        return PodNetwork(network, routed=True)
    if shutil.which("ip") is None:
        return _loopback("no `ip` command")
    taken = _routed_networks()
    candidates = list(POOL.subnets(new_prefix=PREFIX))
    random.shuffle(candidates)
    error = ""
    for network in candidates[:8]:
        if any(network.overlaps(t) for t in taken):
            continue
        error = _ip_route("add", network)
        if not error:
            return PodNetwork(network, routed=True)
        if "File exists" not in error:
            break
    return _loopback(f"`ip route add local` failed: {error or 'no free /20'}")


def _loopback(reason: str) -> PodNetwork:
    second = random.randint(100, 199)
    network = ipaddress.IPv4Network(f"127.{second}.0.0/16")
    note = (
        f"pods get loopback addresses ({network}) because {reason}; the API server refuses "
        "loopback addresses in EndpointSlices, so Services and the Gateway reach no pod"
    )
    return PodNetwork(network, routed=False, note=note)


def _ip_route(action: str, network: ipaddress.IPv4Network) -> str:
    """Runs `ip route <action> local <network> dev lo`; returns its error text, empty if none."""
    done = subprocess.run(
        ["ip", "route", action, "local", str(network), "dev", "lo"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return "" if done.returncode == 0 else (done.stderr.strip() or f"exit {done.returncode}")


def _routed_networks() -> list[ipaddress.IPv4Network]:
    done = subprocess.run(
        ["ip", "-j", "-4", "route", "show", "table", "all"],
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    found: list[ipaddress.IPv4Network] = []
    try:
        routes = json.loads(done.stdout or "[]")
    except json.JSONDecodeError:
        return found
    for route in routes:
        dst = route.get("dst", "")
        try:
            network = ipaddress.ip_network(dst, strict=False)
        except ValueError:
            continue
        if isinstance(network, ipaddress.IPv4Network) and network.prefixlen > 0:
            found.append(network)
    return found


def _bindable(ip: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((ip, port))
        except OSError:
            return False
    return True
