"""What the gateway sends a backend (RainbowRequest) and what the backend
answers (RainbowResponse). docs/protocol.md: Connecting (connect hook),
Forwarding to the backend, Response headers the gateway obeys, Close hook,
Idempotency toward the backend.

The names and call shapes follow the original rainbow-django SDK
(RainbowRequest(identity, msg_type, data, context), RainbowResponse(data,
request, context) with .sub(), .unsub() and .context), so handlers written
for it run unchanged.
"""
import base64
import binascii
import copy
import json

__all__ = ["RainbowRequest", "RainbowResponse", "InvalidRequest", "Headers",
           "encode_context", "decode_context", "H_IDENTITY", "H_COOKIE", "H_QOS",
           "H_MESSAGE_ID", "H_DUP", "H_CHANNEL", "H_UNSUB", "H_INVALID"]

H_IDENTITY = "RAINBOWCLIENTIDENTITY"
H_COOKIE = "RAINBOWCLIENTCOOKIE"
H_QOS = "RAINBOWQOS"
H_MESSAGE_ID = "RAINBOWMESSAGEID"
H_DUP = "RAINBOWDUP"
H_CHANNEL = "RAINBOWCLIENTCHANNEL"
H_UNSUB = "RAINBOWCLIENTCHANNELUNSUB"
H_INVALID = "RAINBOWREQUESTINVALID"
CHANNEL_SEP = ";;"


class InvalidRequest(Exception):
    """Raise it in a message handler to refuse the message: the gateway
    sends no ACK/REC and a rainbow.v2 client gets NAK 422 with `reason`."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = str(reason)


class Headers:
    """Case-insensitive, read-only view of request headers (first value)."""

    def __init__(self, items=()):
        self._d = {}
        for k, v in (items.items() if hasattr(items, "items") else items):
            self._d.setdefault(str(k).lower(), (str(k), v))

    def get(self, name, default=None):
        kv = self._d.get(name.lower())
        return default if kv is None else kv[1]

    def __getitem__(self, name):
        kv = self._d.get(name.lower())
        if kv is None:
            raise KeyError(name)
        return kv[1]

    def __contains__(self, name):
        return name.lower() in self._d

    def __iter__(self):
        return (k for k, _ in self._d.values())

    def items(self):
        return list(self._d.values())

    def __len__(self):
        return len(self._d)

    def __repr__(self):
        return "Headers(%r)" % dict(self._d.values())


def encode_context(context):
    """The cookie text for a context: base64 of its compact JSON (what the
    original SDK stored, and what the gateway's tokens put there)."""
    raw = json.dumps(context, separators=(",", ":"), ensure_ascii=False).encode()
    return base64.b64encode(raw).decode("ascii")


def decode_context(cookie):
    """The context a cookie holds: a dict (empty when there is no cookie).
    Raises ValueError for a cookie that is not base64 of a JSON object."""
    if not cookie:
        return {}
    try:
        v = json.loads(base64.b64decode(cookie.strip(), validate=True).decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as e:
        raise ValueError("RAINBOWCLIENTCOOKIE is not base64 JSON: %s" % e) from None
    if not isinstance(v, dict):
        raise ValueError("RAINBOWCLIENTCOOKIE holds JSON that is not an object")
    return v


class RainbowRequest:
    """One call from the gateway.

    identity    the connection's identity (RAINBOWCLIENTIDENTITY)
    msg_type    the message type (int) for a forward; "connect" / "close" for hooks
    data        the payload: decoded JSON (data_format "json") or bytes ("raw")
    context     the dict stored in the connection's cookie (base64 JSON)
    body        the raw payload bytes
    kind        "message", "connect" or "close"
    qos         0, 1 or 2 (forwards)
    message_id  RAINBOWMESSAGEID ("<device or identity>:<msgid>", QoS 1/2), or None
    dup         True when the gateway marked the call RAINBOWDUP: 1
    cookie      the raw cookie text (None without one)
    headers     every request header (for the connect hook: the client's
                own upgrade headers and its upgrade query arguments)
    query       the call's query arguments (timestamp, nonce, signature)
    http        the framework's request object, if any (Django's HttpRequest);
                attributes this class lacks are looked up there, so a connect
                handler written for rainbow-django can still read request.GET
    db          during a deduplicated (QoS 2) call with an SQLite store: the
                store's connection, inside the transaction that will record
                the reply; write your own state with it to make it atomic
                with the reply
    """

    def __init__(self, identity, msg_type, data=None, context=None, *, kind="message",
                 body=b"", headers=None, query=None, cookie=None, qos=0, message_id=None,
                 dup=False, http=None):
        self.identity = identity
        self.msg_type = msg_type
        self.data = data
        self.context = {} if context is None else context
        self.kind = kind
        self.body = body
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.query = dict(query or {})
        self.cookie = cookie
        self.qos = qos
        self.message_id = message_id
        self.dup = dup
        self.http = http
        self.db = None
        # What the gateway holds now: a response sends the cookie only when
        # the context differs from it.
        self._context_sent = copy.deepcopy(self.context) if cookie else None

    @property
    def rbidentity(self):
        """rainbow-django's name for the identity on its connect/close request."""
        return self.identity

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def json(self):
        """The payload parsed as JSON (None for an empty payload)."""
        if not self.body:
            return None
        return json.loads(self.body.decode("utf-8"))

    def __getattr__(self, name):
        http = self.__dict__.get("http")
        if http is not None and not name.startswith("_"):
            return getattr(http, name)
        raise AttributeError(name)

    def __repr__(self):
        return "<RainbowRequest %s type=%r identity=%s qos=%d id=%s%s>" % (
            self.kind, self.msg_type, (self.identity or "?")[:12], self.qos,
            self.message_id, " dup" if self.dup else "")


def _channel_list(channels):
    out = []
    for c in channels:
        if isinstance(c, (list, tuple, set, frozenset)):
            out.extend(_channel_list(c))
            continue
        c = str(c)
        if not c or CHANNEL_SEP in c or "\r" in c or "\n" in c:
            raise ValueError("bad channel name %r (empty, or holds ';;' or a line break)" % c)
        out.append(c)
    return out


class RainbowResponse:
    """The answer to a call. data is the reply: the ACK/REC payload of a
    forward (dict/list -> JSON, str -> UTF-8, bytes as they are, None ->
    empty), or the connect hook's JSON ({"status": "success"} admits; the
    default for a connect answer without data).

    .context     dict stored in the connection's cookie (starts as the
                 request's; sent back when it changed, or is not empty)
    .sub(c, ...) / .unsub(c, ...)   join / leave channels (RAINBOWCLIENTCHANNEL
                 / RAINBOWCLIENTCHANNELUNSUB); both may be called many times
    .invalid(reason)   refuse the forward (RAINBOWREQUESTINVALID): no ACK/REC,
                 NAK 422 with the reason for a rainbow.v2 client
    .refuse(msg) refuse a connect hook (the client gets HTTP 401)
    """

    def __init__(self, data=None, request=None, context=None, *, status=200, headers=None):
        self.data = data
        self.request = request
        if context is not None:
            self._context = context
        elif request is not None:
            self._context = request.context
        else:
            self._context = None
        self._sub = []
        self._unsub = []
        self.status = status
        self.extra_headers = list(headers or [])
        self.invalid_reason = None
        self.cookie = None  # raw cookie text; overrides .context when set

    @property
    def context(self):
        if self._context is None:
            self._context = {}
        return self._context

    @context.setter
    def context(self, value):
        self._context = value

    @property
    def subscribes(self):
        return self._sub

    @property
    def unsubscribes(self):
        return self._unsub

    def sub(self, *channels):
        self._sub.extend(_channel_list(channels))
        return self

    def unsub(self, *channels):
        self._unsub.extend(_channel_list(channels))
        return self

    def invalid(self, reason):
        reason = str(reason).replace("\r", " ").replace("\n", " ")
        self.invalid_reason = reason or "invalid request"
        return self

    nak = invalid

    def refuse(self, msg="refused"):
        self.data = {"status": "fail", "msg": msg}
        return self

    def set_cookie(self, text):
        if "\r" in text or "\n" in text:
            raise ValueError("a cookie cannot hold a line break")
        self.cookie = text
        return self

    def _cookie_header(self):
        if self.cookie is not None:
            return self.cookie
        ctx = self._context
        sent = self.request._context_sent if self.request is not None else None
        if ctx is None:
            return None
        if ctx == sent:
            return None                       # the gateway holds it already
        if not ctx and sent is None:
            return None                       # nothing to store, nothing to clear
        return encode_context(ctx)

    def render(self, data_format="json", kind="message"):
        """(status, [(header, value)], body bytes). Header values are str;
        non-ASCII text is carried as its UTF-8 bytes."""
        data = self.data
        if data is None and kind == "connect":
            data = {"status": "success"}
        if data is None:
            body = b""
        elif isinstance(data, (bytes, bytearray, memoryview)):
            body = bytes(data)
        elif isinstance(data, str):
            body = data.encode("utf-8")
        else:
            body = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()
        if data is None or isinstance(data, (bytes, bytearray, memoryview)):
            ctype = "application/octet-stream"
        elif isinstance(data, str):
            ctype = "text/plain; charset=utf-8"
        else:
            ctype = "application/json"
        headers = [("Content-Type", ctype)]
        cookie = self._cookie_header()
        if cookie is not None:
            headers.append((H_COOKIE, cookie))
        if self._sub:
            headers.append((H_CHANNEL, CHANNEL_SEP.join(self._sub)))
        if self._unsub:
            headers.append((H_UNSUB, CHANNEL_SEP.join(self._unsub)))
        if self.invalid_reason is not None:
            headers.append((H_INVALID, self.invalid_reason))
        headers.extend(self.extra_headers)
        return self.status, headers, body
