"""CurveZMQ for a bridge reached beyond loopback: encryption, and only listed controllers may connect.

Keys are ZMQ certificate files (``zmq.auth.create_certificates(folder, name)`` writes ``name.key``
with the public key and ``name.key_secret`` with both). The bridge loads its secret certificate and
accepts only clients whose public certificates lie in an authorised folder (a ZAP handler checks
each connection); a controller loads its own secret certificate and the bridge's public one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator


class CurveKeyError(ValueError):
    """A key file or folder that cannot be used."""


def _load(path: Path, secret: bool) -> tuple[bytes, bytes | None]:
    if not path.is_file():
        raise CurveKeyError(f"key file {path} does not exist")
    try:
        public, secret_key = zmq.auth.load_certificate(path)
    except (ValueError, OSError) as exc:
        raise CurveKeyError(f"key file {path}: not a ZMQ certificate ({exc})") from None
    if secret and secret_key is None:
        raise CurveKeyError(f"key file {path}: holds no secret key (use the .key_secret file)")
    return public, secret_key


@dataclass
class CurveServer:
    """The bridge's certificate (``.key_secret``) and the folder of authorised controllers' ``.key`` files."""

    secret_file: Path
    clients_dir: Path

    def __post_init__(self) -> None:
        self.public, self.secret = _load(self.secret_file, secret=True)
        if not self.clients_dir.is_dir():
            raise CurveKeyError(f"authorised clients folder {self.clients_dir} does not exist")

    def apply(self, context: zmq.Context, sock: zmq.Socket) -> ThreadAuthenticator:
        """Make ``sock`` a Curve server; returns the started authenticator (stop it after use)."""
        auth = ThreadAuthenticator(context)
        auth.start()
        auth.configure_curve(domain="*", location=str(self.clients_dir))
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_server = True
        return auth


@dataclass
class CurveClient:
    """The controller's certificate (``.key_secret``) and the bridge's public one (``.key``)."""

    secret_file: Path
    server_public_file: Path

    def __post_init__(self) -> None:
        self.public, self.secret = _load(self.secret_file, secret=True)
        self.server_public, _ = _load(self.server_public_file, secret=False)

    def apply(self, sock: zmq.Socket) -> None:
        sock.curve_secretkey = self.secret
        sock.curve_publickey = self.public
        sock.curve_serverkey = self.server_public
