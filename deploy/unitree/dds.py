"""Cyclone DDS set-up for talking to a G1: the vendor's discovery settings on one network interface.

By default the domain is configured exactly as the vendor SDK's ``ChannelFactoryInitialize(domain,
interface)`` configures it (``unitree_sdk2py/core/channel_config.py``): one ``NetworkInterface`` with
default priority and multicast, so discovery is by multicast on that interface, ``lo`` included.
That is what a G1 (``enp3s0`` on 192.168.123.x) and Unitree's own simulator (``unitree_mujoco`` on
``lo``) speak. The vendor's config also writes a Cyclone trace to ``/tmp/cdds.LOG``; ours leaves
tracing off. Unicast discovery is an option (``peers``: multicast off, those addresses probed), for
networks that drop multicast. A user's own Cyclone XML replaces all of this (``config_xml``).
"""

from __future__ import annotations

import threading
from pathlib import Path
from xml.sax.saxutils import quoteattr

from cyclonedds.core import Entity
from cyclonedds.domain import Domain, DomainParticipant

# Unicast discovery probes one port per participant index; a bridge, a simulated robot and a
# monitoring tool on one host stay well inside this.
_MAX_PARTICIPANTS_PER_HOST = 20

_domains: dict[int, tuple[Domain, str]] = {}
_domains_lock = threading.Lock()


class DdsConfigError(ValueError):
    """A DDS domain that cannot be opened as configured."""


def cyclonedds_config(interface: str, peers: tuple[str, ...] = ()) -> str:
    """Cyclone DDS XML: the vendor SDK's settings on ``interface``; with ``peers``, unicast discovery."""
    general = (
        f'<Interfaces><NetworkInterface name={quoteattr(interface)} priority="default" multicast="default"/>'
        "</Interfaces>"
    )
    discovery = ""
    if peers:
        general += "<AllowMulticast>false</AllowMulticast>"
        peer_xml = "".join(f"<Peer Address={quoteattr(p)}/>" for p in peers)
        discovery = (
            "<Discovery><ParticipantIndex>auto</ParticipantIndex>"
            f"<MaxAutoParticipantIndex>{_MAX_PARTICIPANTS_PER_HOST}</MaxAutoParticipantIndex>"
            f"<Peers>{peer_xml}</Peers></Discovery>"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8" ?>\n'
        '<CycloneDDS><Domain Id="any">'
        f"<General>{general}</General>{discovery}</Domain></CycloneDDS>"
    )


def read_config_file(path: Path) -> str:
    """A user's Cyclone DDS XML file, read whole; a missing or unreadable file is a DdsConfigError."""
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise DdsConfigError(f"dds_config: cannot read {str(path)!r} ({exc.strerror or exc})") from exc


def open_participant(
    domain_id: int, interface: str, peers: tuple[str, ...] = (), config_xml: str | None = None
) -> DomainParticipant:
    """A participant on ``domain_id``: ``config_xml`` if given, else ``cyclonedds_config(interface, peers)``.

    Cyclone keeps one configuration per domain id and process, so the domain is created once and
    reused; asking for the same domain with another configuration is an error, not a silent rebinding.
    """
    config = config_xml if config_xml is not None else cyclonedds_config(interface, peers)
    with _domains_lock:
        if domain_id in _domains:
            if _domains[domain_id][1] != config:
                raise DdsConfigError(
                    f"domain_id: {domain_id} is already open in this process with another DDS configuration"
                )
        else:
            try:
                _domains[domain_id] = (Domain(domain_id, config), config)
            except Exception as exc:  # cyclonedds reports bad interfaces and XML as a bare DDSException
                what = "the given DDS config" if config_xml is not None else repr(interface)
                raise DdsConfigError(
                    f"interface: cannot open DDS domain {domain_id} on {what} ({exc})"
                ) from exc
    return DomainParticipant(domain_id)


def delete_entities(*entities: Entity | None) -> None:
    """Delete DDS entities now, children before parents (cyclonedds otherwise keeps them alive)."""
    for entity in entities:
        if entity is not None:
            entity.__del__()
