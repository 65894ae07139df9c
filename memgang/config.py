"""Connection and bounds configuration: a dataclass with ``from_url``."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from .codec import DEFAULT_MAX_DEPTH, DEFAULT_MAX_VALUE_BYTES
from .errors import Error

ENV_URL = "MEMGANG_URL"
SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class Config:
    """How a Gang reaches Redis and the bounds it enforces.

    ``url`` is ``redis://[:password@]host:port/db``, ``rediss://`` for TLS, or
    ``unix:///path/to.sock?db=0``. ``None`` means: ``MEMGANG_URL`` if set, else an embedded
    redis-server started for this process.
    """

    url: str | None = None
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES
    max_depth: int = DEFAULT_MAX_DEPTH
    log_maxlen: int = 100_000
    socket_timeout_s: float | None = None
    connect_timeout_s: float = 5.0
    redis_options: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.url is not None:
            scheme = urlsplit(self.url).scheme
            if scheme not in SCHEMES:
                raise Error(f"unsupported URL scheme {scheme!r} in {redact(self.url)}: "
                            f"use {', '.join(s + '://' for s in SCHEMES)}")
        if self.log_maxlen < 100:
            raise Error(f"log_maxlen must be at least 100, got {self.log_maxlen}")

    @classmethod
    def from_url(cls, url: str | None = None, **options: Any) -> Config:
        """Build a Config from ``url``, else ``MEMGANG_URL``, else for an embedded server."""
        return cls(url=url or os.environ.get(ENV_URL) or None, **options)

    def with_url(self, url: str) -> Config:
        return replace(self, url=url)

    def __repr__(self) -> str:
        return (f"Config(url={redact(self.url)!r}, max_value_bytes={self.max_value_bytes}, "
                f"max_depth={self.max_depth}, log_maxlen={self.log_maxlen})")


def redact(url: str | None) -> str | None:
    """The URL with any password replaced by ``***``."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))
