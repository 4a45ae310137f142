"""Cyclone DDS set-up for talking to a G1: domain config pinned to one network interface.

A G1 is reached on one wired interface (e.g. ``enp3s0`` on 192.168.123.x) with multicast
discovery, as the vendor's ``ChannelFactoryInitialize`` does. The loopback interface has no
multicast, so there discovery goes unicast to 127.0.0.1, which is how the simulated G1 and the
tests run on one machine.
"""

from __future__ import annotations

import threading
from xml.sax.saxutils import quoteattr

from cyclonedds.core import Entity
from cyclonedds.domain import Domain, DomainParticipant

LOOPBACK_INTERFACES = ("lo", "lo0")
# Unicast discovery probes one port per participant index; a bridge, a simulated robot and a
# monitoring tool on one host stay well inside this.
_MAX_PARTICIPANTS_PER_HOST = 20

_domains: dict[int, tuple[Domain, str]] = {}
_domains_lock = threading.Lock()


class DdsConfigError(ValueError):
    """A DDS domain that cannot be opened as configured."""


def cyclonedds_config(interface: str, peers: tuple[str, ...] = ()) -> str:
    """Cyclone DDS XML that binds the domain to ``interface``; loopback (or explicit peers) is unicast."""
    if interface in LOOPBACK_INTERFACES and not peers:
        peers = ("127.0.0.1",)
    discovery = ""
    general = f"<Interfaces><NetworkInterface name={quoteattr(interface)}/></Interfaces>"
    if peers:
        general += "<AllowMulticast>false</AllowMulticast>"
        peer_xml = "".join(f"<Peer Address={quoteattr(p)}/>" for p in peers)
        discovery = (
            "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
            f"<MaxAutoParticipantIndex>{_MAX_PARTICIPANTS_PER_HOST}</MaxAutoParticipantIndex>"
            f"<Peers>{peer_xml}</Peers></Discovery>"
        )
    return (
        '<CycloneDDS xmlns="https://cdds.io/config"><Domain Id="any">'
        f"<General>{general}</General>{discovery}</Domain></CycloneDDS>"
    )


def open_participant(domain_id: int, interface: str, peers: tuple[str, ...] = ()) -> DomainParticipant:
    """A participant on ``domain_id`` bound to ``interface``.

    Cyclone keeps one configuration per domain id and process, so the domain is created once and
    reused; asking for the same domain on another interface is an error, not a silent rebinding.
    """
    config = cyclonedds_config(interface, peers)
    with _domains_lock:
        if domain_id in _domains:
            if _domains[domain_id][1] != config:
                raise DdsConfigError(
                    f"domain_id: {domain_id} is already open in this process on another interface/peers"
                )
        else:
            try:
                _domains[domain_id] = (Domain(domain_id, config), config)
            except Exception as exc:  # cyclonedds reports bad interfaces as a bare DDSException
                raise DdsConfigError(
                    f"interface: cannot open DDS domain {domain_id} on {interface!r} ({exc})"
                ) from exc
    return DomainParticipant(domain_id)


def delete_entities(*entities: Entity | None) -> None:
    """Delete DDS entities now, children before parents (cyclonedds otherwise keeps them alive)."""
    for entity in entities:
        if entity is not None:
            entity.__del__()
