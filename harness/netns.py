"""Hosts on one machine: Linux network namespaces joined by one virtual switch, so a test can run
the service's parts on separate "hosts" and cut one host off the network.

Each :class:`Host` is a namespace of its own (its own loopback, addresses, ports and routes)
with one veth link, ``eth0``, to a bridge. The bridge lives in the first host's namespace (the
services' host: it plays the switch), and the test's own namespace gets one more link to it, so
the test reaches every host by address while nothing here touches the machine's other
interfaces or any outside network. Names carry a random tag, the subnet is one no other run is
using, and :meth:`Network.remove` deletes it all (processes left in a namespace included).

Needs root (``ip netns add``); :func:`available` says whether this machine allows it.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import logging
import os
import signal
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

_LOGGER = logging.getLogger(__name__)

PREFIX = "10.213"
"""Subnets are ``10.213.N.0/24``: private, and picked so that parallel runs never share one."""
_LOCK = Path("/run/lock/moksori-netns.lock")


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@functools.cache
def available() -> bool:
    """Whether this machine lets us create a network namespace and a veth pair (root, ``ip``)."""
    name = f"moksori-probe-{uuid.uuid4().hex[:6]}"
    try:
        if _ip("netns", "add", name, check=False).returncode != 0:
            return False
        veth = _ip("-n", name, "link", "add", "a0", "type", "veth", "peer", "name", "b0")
        return veth.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            _ip("netns", "del", name, check=False)


@dataclass
class Host:
    """One namespace on the network: ``address`` is its ``eth0`` address."""

    name: str
    netns: str
    address: str

    def argv(self, args: Sequence[str]) -> list[str]:
        """``args`` run inside this host (``ip netns exec`` execs the command: same pid)."""
        return ["ip", "netns", "exec", self.netns, *args]

    def cut(self) -> None:
        """Take the host off the network: its link goes down, so packets in both directions are
        dropped without a reset and its peers notice only by their own timeouts."""
        _ip("-n", self.netns, "link", "set", "eth0", "down")

    def restore(self) -> None:
        """Bring the host's link back up (its address and routes come back with it)."""
        _ip("-n", self.netns, "link", "set", "eth0", "up")

    def pids(self) -> list[int]:
        """Every process running in this namespace."""
        done = _ip("netns", "pids", self.netns, check=False)
        return [int(p) for p in done.stdout.split()]


class Network:
    """A switch and the hosts on it; use as a context manager, or call :meth:`remove`."""

    def __init__(self, names: Sequence[str]) -> None:
        """Create one host per name (the first holds the switch) on a fresh /24."""
        self.tag = uuid.uuid4().hex[:6]
        self.hosts: dict[str, Host] = {}
        self._root_link = f"mk{self.tag}r"
        self._created: list[str] = []
        try:
            self._build(names)
        except BaseException:
            self.remove()
            raise

    def _build(self, names: Sequence[str]) -> None:
        _LOCK.parent.mkdir(parents=True, exist_ok=True)
        with _LOCK.open("a") as lock:
            # Held while picking the subnet and claiming it with our address, so two runs
            # starting together cannot pick the same one.
            fcntl.flock(lock, fcntl.LOCK_EX)
            subnet = self._free_subnet()
            hosts = list(subnet.hosts())
            self.root_address = str(hosts[-1])
            for index, name in enumerate(names):
                netns = f"moksori-{self.tag}-{name}"
                _ip("netns", "add", netns)
                self._created.append(netns)
                self.hosts[name] = Host(name, netns, str(hosts[index]))
            switch = self.hosts[names[0]].netns
            _ip("-n", switch, "link", "add", "br0", "type", "bridge")
            # Links are made in our namespace under names carrying the tag (unique there), then
            # moved and renamed: eth0 in the host, p-<host> on the switch.
            here, there = f"mk{self.tag}a", f"mk{self.tag}b"
            for host in self.hosts.values():
                _ip("-n", host.netns, "link", "set", "lo", "up")
                port = f"p-{host.name}"[:15]
                _ip("link", "add", here, "type", "veth", "peer", "name", there)
                _ip("link", "set", here, "netns", host.netns, "name", "eth0")
                _ip("link", "set", there, "netns", switch, "name", port)
                _ip("-n", switch, "link", "set", port, "master", "br0", "up")
                _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
                _ip("-n", host.netns, "link", "set", "eth0", "up")
            _ip("link", "add", self._root_link, "type", "veth", "peer", "name", there)
            _ip("link", "set", there, "netns", switch, "name", "p-root")
            _ip("-n", switch, "link", "set", "p-root", "master", "br0", "up")
            _ip("-n", switch, "link", "set", "br0", "up")
            _ip("addr", "add", f"{self.root_address}/24", "dev", self._root_link)
            _ip("link", "set", self._root_link, "up")
        _LOGGER.info(
            "network %s: %s",
            subnet,
            ", ".join(f"{h.name}={h.address}" for h in self.hosts.values()),
        )

    @staticmethod
    def _free_subnet() -> ipaddress.IPv4Network:
        used = _ip("-o", "-4", "addr", "show").stdout
        for third in range(1, 255):
            subnet = ipaddress.IPv4Network(f"{PREFIX}.{third}.0/24")
            if f" {PREFIX}.{third}." not in used:
                return subnet
        raise RuntimeError(f"every {PREFIX}.N.0/24 subnet is in use")

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> Network:
        return self

    def __exit__(self, *_: object) -> None:
        self.remove()

    def remove(self) -> None:
        """Kill what still runs in the namespaces, then delete them and the test's link (which
        takes every veth and the bridge with it)."""
        for host in self.hosts.values():
            for pid in host.pids():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _ip("link", "del", self._root_link, check=False)
        for netns in reversed(self._created):
            _ip("netns", "del", netns, check=False)
        self._created.clear()


@contextlib.contextmanager
def network(names: Sequence[str]) -> Iterator[Network]:
    """A :class:`Network` of ``names``, removed on exit whatever happened."""
    net = Network(names)
    try:
        yield net
    finally:
        net.remove()
