"""Bearer tokens with two scopes, ``search`` and ``admin``.

Tokens come from ``ECHOSEEK_TOKENS`` (``token:scope,token:scope``) and from a tokens file (one
``token:scope`` per line, ``#`` comments). ``admin`` includes ``search``. With no token
configured the service is open, which is allowed only on a loopback address
(:func:`check_bind`). Presented tokens are compared with every known one in constant time
(``hmac.compare_digest``), so the answer time does not tell how much of a token matched.
"""

from __future__ import annotations

import hmac
import os
from dataclasses import dataclass
from pathlib import Path

from echoseek.errors import ConfigError
from echoseek.service.config import is_local

SCOPES = ("search", "admin")
ENV = "ECHOSEEK_TOKENS"


@dataclass(frozen=True)
class Tokens:
    """Known tokens and their scope; empty means auth is off."""

    entries: tuple[tuple[bytes, str], ...] = ()

    @property
    def enabled(self) -> bool:
        return bool(self.entries)

    def scope_of(self, token: str) -> str | None:
        """The scope of ``token``, or None when it is unknown (every entry is compared)."""
        given = token.encode()
        found = None
        for known, scope in self.entries:
            if hmac.compare_digest(known, given):
                found = scope
        return found

    def allows(self, authorization: str | None, scope: str) -> bool | None:
        """True when the ``Authorization`` header grants ``scope``; None when it names no
        known token (401), False when the token's scope is too small (403)."""
        if not self.enabled:
            return True
        kind, _, token = (authorization or "").partition(" ")
        if kind.lower() != "bearer" or not token:
            return None
        have = self.scope_of(token.strip())
        if have is None:
            return None
        return have == "admin" or have == scope


def parse_tokens(text: str, where: str, sep: str = ",") -> list[tuple[bytes, str]]:
    """``token:scope`` items separated by ``sep`` (blank items and ``#`` comments skipped)."""
    out = []
    for raw in text.split(sep):
        item = raw.split("#", 1)[0].strip()
        if not item:
            continue
        token, _, scope = item.rpartition(":")
        if not token or scope not in SCOPES:
            raise ConfigError(f"{where}: expected 'token:scope' with scope in {SCOPES}")
        if len(token) < 16:
            raise ConfigError(f"{where}: a token must have at least 16 characters")
        out.append((token.encode(), scope))
    return out


def load_tokens(tokens_file: str = "", env: dict[str, str] | None = None) -> Tokens:
    """Tokens from ``$ECHOSEEK_TOKENS`` and ``tokens_file`` (both optional)."""
    environ = os.environ if env is None else env
    entries = parse_tokens(environ.get(ENV, ""), ENV)
    if tokens_file:
        try:
            text = Path(tokens_file).read_text()
        except OSError as exc:
            raise ConfigError(f"tokens_file: cannot read {tokens_file} ({exc.strerror})") from None
        entries += parse_tokens(text, tokens_file, sep="\n")
    return Tokens(tuple(entries))


def check_bind(host: str, tokens: Tokens) -> None:
    """Refuse a non-loopback bind address unless tokens are configured."""
    if not is_local(host) and not tokens.enabled:
        raise ConfigError(
            f"host: {host} is not a loopback address; configure tokens ({ENV} or "
            "tokens_file) before serving beyond this machine"
        )
