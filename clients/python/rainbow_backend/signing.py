"""Request signatures of the Rainbow protocol (docs/protocol.md Signatures,
docs/rest-api.md Signatures). Standard library only; pure functions apart
from the clock and the random nonces.

v1, the original scheme (every call the gateway makes to a backend, and
REST calls when api_signature allows it):

    signature = hex(sha1(concat(sort([token, timestamp, nonce]))))

sorted byte by byte, lowercase hex, sent as the query arguments timestamp,
nonce and signature. It signs neither the request nor the body.

v2 (REST calls only): HMAC-SHA256 under the token of

    METHOD "\n" PATH "\n" CANONICAL_QUERY "\n" sha256_hex(BODY)

where CANONICAL_QUERY is every query argument but signature, sorted by name
then value, each written name=value with RFC 3986 escaping, joined by "&".
"""
import hashlib
import hmac
import re
import secrets
import threading
import time
import urllib.parse

__all__ = [
    "DEFAULT_WINDOW", "SignatureError", "sign_v1", "check_v1", "verify_v1",
    "signed_query_v1", "new_nonce", "canonical_query", "string_to_sign_v2",
    "sign_v2", "check_v2", "verify_v2", "signed_query_v2", "NonceCache",
]

DEFAULT_WINDOW = 10          # seconds, the gateway's signature_window default
NONCE_LIMIT = 2 ** 53        # outbound nonces stay below it (exact in JavaScript)
INT64_MAX = 2 ** 63 - 1
_DIGITS = re.compile(r"[0-9]+\Z")
_HEX40 = re.compile(r"[0-9a-f]{40}\Z")
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")


class SignatureError(ValueError):
    """A signature that does not verify. kind is "missing" (an argument is
    absent or empty), "stale" (the timestamp is not plain decimal digits
    within the window of now), "mismatch" (wrong signature) or "replayed"
    (v2: the nonce was seen before)."""

    def __init__(self, kind, message):
        super().__init__(message)
        self.kind = kind


def _bytes(s):
    if s is None:
        return b""
    if isinstance(s, (bytes, bytearray)):
        return bytes(s)
    return str(s).encode("utf-8")


def _text(s):
    if s is None:
        return ""
    if isinstance(s, (bytes, bytearray)):
        return bytes(s).decode("utf-8")
    return str(s)


# ------------------------------------------------------------------ v1

def sign_v1(token, timestamp, nonce):
    """The v1 signature (40 lowercase hex characters). None counts as ""."""
    parts = sorted([_bytes(token), _bytes(timestamp), _bytes(nonce)])
    return hashlib.sha1(b"".join(parts)).hexdigest()


def _fresh(timestamp, now, window):
    """timestamp is plain decimal digits (leading zeros allowed) naming a
    second within +-window of now; a negative window accepts nothing."""
    ts = _text(timestamp)
    if window < 0 or not _DIGITS.match(ts):
        return False
    v = int(ts)
    return v <= INT64_MAX and abs(v - int(now)) <= window


def check_v1(token, timestamp, nonce, signature, now=None, window=DEFAULT_WINDOW):
    """Raise SignatureError unless the v1 signature is valid and fresh.
    Checked in the gateway's order: missing arguments, then the time, then
    the signature (compared in constant time)."""
    if token is None or not timestamp or not nonce or not signature:
        raise SignatureError("missing", "missing timestamp, nonce or signature")
    now = time.time() if now is None else now
    if not _fresh(timestamp, now, window):
        raise SignatureError("stale", "stale or malformed timestamp %r" % (_text(timestamp)[:32],))
    sig = _text(signature)
    if not _HEX40.match(sig) or not hmac.compare_digest(sign_v1(token, timestamp, nonce), sig):
        raise SignatureError("mismatch", "signature mismatch")


def verify_v1(token, timestamp, nonce, signature, now=None, window=DEFAULT_WINDOW):
    """True when check_v1 passes."""
    try:
        check_v1(token, timestamp, nonce, signature, now, window)
    except SignatureError:
        return False
    return True


def new_nonce():
    """A random decimal integer in 1 .. 2^53 - 1, as the gateway draws its
    own (the original's backends parse nonces with int())."""
    return str(secrets.randbelow(NONCE_LIMIT - 1) + 1)


def signed_query_v1(token, now=None, nonce=None):
    """{"timestamp", "nonce", "signature"} for a v1-signed call."""
    ts = str(int(time.time() if now is None else now))
    nonce = new_nonce() if nonce is None else str(nonce)
    return {"timestamp": ts, "nonce": nonce, "signature": sign_v1(token, ts, nonce)}


# ------------------------------------------------------------------ v2

def _pairs(query):
    """A mapping, a sequence of (name, value), or a query string, as a list
    of decoded (str, str) pairs."""
    if query is None:
        return []
    if isinstance(query, (str, bytes)):
        return urllib.parse.parse_qsl(_text(query), keep_blank_values=True)
    items = query.items() if hasattr(query, "items") else query
    return [(_text(k), _text(v)) for k, v in items]


def _escape(s):
    # quote() with no safe characters leaves exactly A-Z a-z 0-9 - . _ ~
    return urllib.parse.quote(s, safe="")


def canonical_query(query):
    """Every argument except signature, sorted by name then value (byte
    order), each re-encoded name=value (RFC 3986, uppercase hex), joined by &."""
    items = sorted(((k.encode(), v.encode()) for k, v in _pairs(query) if k != "signature"))
    return "&".join("%s=%s" % (_escape(k), _escape(v)) for k, v in items)


def string_to_sign_v2(method, path, query, body=b""):
    return "\n".join([_text(method).upper(), _text(path), canonical_query(query),
                      hashlib.sha256(_bytes(body)).hexdigest()])


def sign_v2(token, method, path, query, body=b""):
    """The v2 signature (64 lowercase hex characters) of a request. query
    holds the decoded arguments (timestamp and nonce included; a signature
    argument is ignored)."""
    return hmac.new(_bytes(token), string_to_sign_v2(method, path, query, body).encode(),
                    hashlib.sha256).hexdigest()


def signed_query_v2(token, method, path, query=None, body=b"", now=None, nonce=None):
    """The query pairs of a v2-signed call: query + timestamp, nonce and
    signature, as a list of (name, value)."""
    pairs = _pairs(query)
    ts = str(int(time.time() if now is None else now))
    nonce = secrets.token_hex(16) if nonce is None else str(nonce)
    pairs += [("timestamp", ts), ("nonce", nonce)]
    return pairs + [("signature", sign_v2(token, method, path, pairs, body))]


class NonceCache:
    """Remembers v2 nonces for 2 * window seconds, so a replay is refused
    (the gateway's rule). Thread-safe; memory only."""

    def __init__(self, window=DEFAULT_WINDOW):
        self.window = window
        self._seen = {}
        self._lock = threading.Lock()

    def add(self, nonce, now=None):
        """False if the nonce was seen within the last 2 * window seconds."""
        now = time.time() if now is None else now
        with self._lock:
            if len(self._seen) > 1024:
                horizon = now - 2 * self.window
                self._seen = {k: t for k, t in self._seen.items() if t >= horizon}
            t = self._seen.get(nonce)
            if t is not None and t >= now - 2 * self.window:
                return False
            self._seen[nonce] = now
            return True


def check_v2(token, method, path, query, body=b"", now=None, window=DEFAULT_WINDOW,
             nonces=None):
    """Raise SignatureError unless the request carries a valid, fresh v2
    signature (and, with a NonceCache, a nonce not used before)."""
    pairs = _pairs(query)
    args = {}
    for k, v in pairs:
        args.setdefault(k, v)
    ts, nonce, sig = args.get("timestamp"), args.get("nonce"), args.get("signature")
    if not ts or not nonce or not sig:
        raise SignatureError("missing", "missing timestamp, nonce or signature")
    now = time.time() if now is None else now
    if not _fresh(ts, now, window):
        raise SignatureError("stale", "stale or malformed timestamp %r" % ts[:32])
    if not _HEX64.match(sig) or not hmac.compare_digest(
            sign_v2(token, method, path, pairs, body), sig):
        raise SignatureError("mismatch", "v2 signature mismatch")
    if nonces is not None and not nonces.add(nonce, now):
        raise SignatureError("replayed", "replayed nonce")


def verify_v2(token, method, path, query, body=b"", now=None, window=DEFAULT_WINDOW,
              nonces=None):
    try:
        check_v2(token, method, path, query, body, now, window, nonces)
    except SignatureError:
        return False
    return True
