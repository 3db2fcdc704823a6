"""Connection tokens (docs/protocol.md Connection tokens): HS256 JSON Web
Tokens the backend mints under the gateway's token_secret; a client passes
one as ?token= on the upgrade (or Authorization: Bearer). Standard library
only. verify_token refuses exactly what the gateway refuses, with the same
reasons (tests/fixtures/token_vectors.json is shared with its unit test).
"""
import base64
import hashlib
import hmac
import json
import time

__all__ = ["TokenError", "mint_token", "verify_token", "TOKEN_SUB_MAX", "TOKEN_CHANNELS_MAX"]

TOKEN_MAX_LEN = 8192
TOKEN_SUB_MAX = 256
TOKEN_CHANNELS_MAX = 64
_B64URL = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


class TokenError(ValueError):
    """A token that does not verify; str(e) is the gateway's reason."""


def _b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64url(part):
    """Strict base64url without padding, or None."""
    raw = part.encode("ascii", "replace")
    if len(raw) % 4 == 1 or any(ch not in _B64URL for ch in raw):
        return None
    try:
        out = base64.urlsafe_b64decode(raw + b"=" * (-len(raw) % 4))
    except ValueError:
        return None
    # non-zero bits left over in the last character: not canonical
    if _b64url(out).encode() != raw:
        return None
    return out


def _no_duplicates(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            raise ValueError("duplicate key %r" % k)
        out[k] = v
    return out


def _int64(s):
    v = int(s)
    if not -2 ** 63 <= v < 2 ** 63:
        raise ValueError("integer out of range")
    return v


def _bad_constant(name):
    raise ValueError("not JSON: %s" % name)


def _object(part):
    data = _unb64url(part)
    if data is None:
        return None
    try:
        v = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                       parse_int=_int64, parse_constant=_bad_constant)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return v if isinstance(v, dict) else None


def _number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def mint_token(secret, sub, expires_in=3600, info=None, channels=None, nbf=None, exp=None,
               now=None):
    """A token for `sub` valid for expires_in seconds (or until exp, seconds
    since the epoch). info: any JSON value handed to the backend (in the
    cookie base64 of {"sub", "info"}); channels: names the client joins at
    once (at most 64); nbf: not valid before."""
    if not isinstance(sub, str) or not sub or len(sub.encode()) > TOKEN_SUB_MAX or "\0" in sub:
        raise ValueError("sub must be a non-empty string of at most %d bytes" % TOKEN_SUB_MAX)
    now = int(time.time() if now is None else now)
    claims = {"sub": sub, "exp": int(exp if exp is not None else now + expires_in)}
    if nbf is not None:
        claims["nbf"] = int(nbf)
    if info is not None:
        claims["info"] = info
    if channels is not None:
        channels = list(channels)
        if len(channels) > TOKEN_CHANNELS_MAX or not all(
                isinstance(c, str) and c and "\0" not in c for c in channels):
            raise ValueError("channels: at most %d non-empty strings" % TOKEN_CHANNELS_MAX)
        claims["channels"] = channels
    header = _b64url(b'{"alg":"HS256","typ":"JWT"}')
    body = _b64url(json.dumps(claims, separators=(",", ":"), ensure_ascii=False).encode())
    signing_input = (header + "." + body).encode("ascii")
    mac = hmac.new(secret.encode() if isinstance(secret, str) else secret, signing_input,
                   hashlib.sha256).digest()
    return header + "." + body + "." + _b64url(mac)


def verify_token(token, secret, now=None, leeway=5):
    """The claims dict of a valid token; raises TokenError with the
    gateway's reason otherwise."""
    if not isinstance(token, str) or not token or len(token.encode()) > TOKEN_MAX_LEN \
            or token.count(".") != 2:
        raise TokenError("malformed token")
    h64, p64, s64 = token.split(".")
    header, claims = _object(h64), _object(p64)
    if header is None or claims is None:
        raise TokenError("malformed token")
    if header.get("alg") != "HS256":
        raise TokenError("token alg must be HS256")
    if "typ" in header and header["typ"] != "JWT":
        raise TokenError("token typ must be JWT")
    if "crit" in header:
        raise TokenError("token has unsupported crit header")
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, (h64 + "." + p64).encode("ascii"), hashlib.sha256).digest()
    sig = _unb64url(s64) if len(s64) <= 86 else None
    if sig is None or not hmac.compare_digest(sig, mac):
        raise TokenError("bad token signature")
    now = time.time() if now is None else now
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub or len(sub.encode()) > TOKEN_SUB_MAX or "\0" in sub:
        raise TokenError("token has no valid sub")
    exp = claims.get("exp")
    if not _number(exp):
        raise TokenError("token has no exp")
    if exp + leeway <= now:
        raise TokenError("token expired")
    if "nbf" in claims and (not _number(claims["nbf"]) or claims["nbf"] - leeway > now):
        raise TokenError("token not yet valid")
    chans = claims.get("channels")
    if "channels" in claims and (not isinstance(chans, list) or len(chans) > TOKEN_CHANNELS_MAX):
        raise TokenError("token channels must be an array of at most 64 names")
    for ch in chans or []:
        if not isinstance(ch, str) or not ch or "\0" in ch:
            raise TokenError("token channels must be non-empty strings")
    return claims
