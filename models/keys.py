"""Cluster keys: the shared attributes that tie accounts into clusters.

A cluster key is one shared attribute, written `kind:value`. An account belongs to many
clusters at once. Kinds:

- `pay`   payment fingerprint
- `ip`    IPv4 /24 or IPv6 /48 prefix
- `sys`   system-prompt hash
- `asnua` ASN together with the user agent
- `tpl`   a prompt template: a bucket, one 16-bit band of the prompt SimHash (LSH), which finds
          a template's crowd; or, once a crowd has agreed on it, the template itself
          (`tpl:s:<signature>`, `template_key`), whose crowd is every account sending prompts
          within a few bits of it, whatever bands they share

>>> ip_prefix("203.0.113.77"), ip_prefix("2001:db8:abcd:12::1")
('203.0.113.0/24', '2001:db8:abcd::/48')
>>> template_keys(0x0123_4567_89ab_cdef, bands=4)
('tpl:0:cdef', 'tpl:1:89ab', 'tpl:2:4567', 'tpl:3:0123')
"""

from __future__ import annotations

import hashlib
import ipaddress
from functools import lru_cache
from typing import Final

from distillguard.models.events import RequestEvent

# The kinds, as `key_kind` returns them and keys begin: compare against these names (or use
# `is_ip_key` / `is_template_key` on a hot path), never bare strings.
PAYMENT: Final = "pay"
IP: Final = "ip"
SYSTEM_PROMPT: Final = "sys"
ASN_CLIENT: Final = "asnua"
TEMPLATE: Final = "tpl"
KINDS = (PAYMENT, IP, SYSTEM_PROMPT, ASN_CLIENT, TEMPLATE)


@lru_cache(maxsize=1 << 16)
def ip_prefix(ip: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) network of an address; the raw text if it is not one.

    Cached: an account sends from the same few addresses request after request."""
    parts = ip.split(".")
    if len(parts) == 4 and all(p.isascii() and p.isdigit() and len(p) <= 3
                               and (p == "0" or p[0] != "0") and int(p) <= 255
                               for p in parts):
        return f"{parts[0]}.{parts[1]}.{parts[2]}.0/24"  # the common case, without ipaddress
    return _parsed_prefix(ip)


@lru_cache(maxsize=1 << 14)
def _parsed_prefix(ip: str) -> str:
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return ip  # the schema allows any text; a malformed address is its own prefix
    if addr.version == 6 and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped  # dual-stack gateways log IPv4 clients as ::ffff:a.b.c.d
    if addr.version == 4:
        a, b, c, _ = str(addr).split(".")
        return f"{a}.{b}.{c}.0/24"
    return str(ipaddress.ip_network(f"{addr}/48", strict=False))


# The bucket names of 16-bit bands (the default), built once: formatting four hex strings per
# request was a tenth of the core's time.
_HEX16 = [f"{v:04x}" for v in range(1 << 16)]


def template_keys(simhash: int, bands: int) -> tuple[str, ...]:
    if bands == 4:
        return ("tpl:0:" + _HEX16[simhash & 0xFFFF],
                "tpl:1:" + _HEX16[(simhash >> 16) & 0xFFFF],
                "tpl:2:" + _HEX16[(simhash >> 32) & 0xFFFF],
                "tpl:3:" + _HEX16[(simhash >> 48) & 0xFFFF])
    width = 64 // bands
    mask = (1 << width) - 1
    digits = width // 4
    return tuple(f"tpl:{i}:{(simhash >> (i * width)) & mask:0{digits}x}" for i in range(bands))


@lru_cache(maxsize=1 << 14)
def template_key(signature: int) -> str:
    """The cluster key of a known template (its signature, models/templates.py).

    >>> template_key(0x0123_4567_89AB_CDEF), signature_of("tpl:s:0123456789abcdef") == 0x0123_4567_89AB_CDEF
    ('tpl:s:0123456789abcdef', True)
    """
    return f"tpl:s:{signature:016x}"


def signature_of(key: str) -> int:
    """The signature of a known template's key (`template_key`), 0 for any other key."""
    return int(key[6:], 16) if key[:6] == "tpl:s:" else 0


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def client_id(user_agent: str | None) -> str | None:
    """A short, stable name of a client (user agent) for per-account counts; None for none."""
    return _short_hash(user_agent) if user_agent else None


def infrastructure_keys(event: RequestEvent) -> tuple[str, ...]:
    """The non-template cluster keys of one event, in a fixed order."""
    return _infrastructure_keys(event.ip, event.payment_fingerprint, event.system_prompt_hash,
                                event.asn, event.user_agent)


@lru_cache(maxsize=1 << 16)
def _infrastructure_keys(ip: str, payment_fingerprint: str | None,
                         system_prompt_hash: str | None, asn: int | None,
                         user_agent: str | None) -> tuple[str, ...]:
    # Cached: an account's requests repeat the same infrastructure almost every time.
    keys = [f"ip:{ip_prefix(ip)}"]
    if payment_fingerprint:
        keys.append(f"pay:{payment_fingerprint}")
    if system_prompt_hash:
        keys.append(system_prompt_key(system_prompt_hash))
    if asn is not None and user_agent:
        keys.append(f"asnua:{asn}:{_short_hash(user_agent)}")
    return tuple(keys)


def system_prompt_key(system_prompt_hash: str) -> str:
    return f"{SYSTEM_PROMPT}:{system_prompt_hash}"


def key_kind(key: str) -> str:
    return key.split(":", 1)[0]


def is_ip_key(key: str) -> bool:
    return key.startswith("ip:")


def is_template_key(key: str) -> bool:
    """A template bucket's key or a known template's (`template_key`)."""
    return key.startswith("tpl:")
