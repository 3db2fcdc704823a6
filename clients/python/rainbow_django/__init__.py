"""rainbow_django: the rainbow-django SDK's API on top of rainbow_backend.

An existing backend switches by changing its import (the package name is
the same) and keeps its handlers, settings and URLs:

    INSTALLED_APPS = [..., "rainbow_django", "demo"]
    RAINBOW_TOKEN = "..."                       # the gateway's security_token
    RAINBOW_SERVER_URL = "http://127.0.0.1:1984"
    RAINBOW_DATA_FORMAT = "json"                # or "" / "raw": bytes
    urlpatterns = [path("rainbow/", include("rainbow_django.urls"))]
        # connect/, close/, message/<type>/

    # demo/rainbow.py, found in every installed app as the original did
    from rainbow_django import rainbow, rainbow_connect, RainbowResponse, send

    @rainbow(1)
    def chat(rbrequest):
        send("room", 1002, {"message": rbrequest.data["message"]})
        return RainbowResponse({"status": "ok"}, rbrequest)

Settings added (all optional):
    RAINBOW_SIGNATURE_WINDOW   seconds of clock skew accepted (10)
    RAINBOW_API_SIGNATURE      "v2" (default) or "v1": how REST calls are signed
    RAINBOW_DEDUP_DB           SQLite file of the QoS 2 exactly-once store; unset:
                               kept in memory (per process)
    RAINBOW_DEDUP_QOS          QoS levels deduplicated, default (2,)

Fixed from the original: .unsub() no longer breaks the response; a message
type without a handler is refused (RAINBOWREQUESTINVALID, NAK 422 under
rainbow.v2) instead of an ACK "None"; a call's timestamp must be within the
window; an error inside an app's rainbow.py is raised, not silently
skipped; handler errors answer HTTP 500 and are logged; QoS 2 is exactly
once across a gateway crash.
"""
import logging
import threading
import warnings

from rainbow_backend import (Backend, InvalidRequest, RainbowRequest, RainbowResponse,
                             RestClient, RestError, SQLiteStore, signed_query_v1)
from rainbow_backend.messages import (H_CHANNEL, H_COOKIE, H_INVALID, H_UNSUB)

__all__ = ["rainbow", "rainbow_connect", "rainbow_close", "RainbowRequest", "RainbowResponse",
           "InvalidRequest", "send", "subscribe", "unsubscribe", "signature", "get_handler",
           "get_setting", "get_backend", "rest_client", "handler_map"]

VERSION = 1.0
log = logging.getLogger(__name__)

handler_map = {}

RAINBOW_SERVER_URL = "RAINBOW_SERVER_URL"
RAINBOW_TOKEN = "RAINBOW_TOKEN"
RAINBOW_DATA_FORMAT = "RAINBOW_DATA_FORMAT"
RAINBOW_CLIENT_COOKIE = H_COOKIE
RAINBOW_CLIENT_CHANNEL_SUB = H_CHANNEL
RAINBOW_CLIENT_CHANNEL_UNSUB = H_UNSUB
RAINBOW_INVALID_REQUEST_REASON = H_INVALID
RAINBOW_CLIENT_IDENTITY = "HTTP_RAINBOWCLIENTIDENTITY"

_DEFAULTS = {
    "RAINBOW_SERVER_URL": "http://127.0.0.1:1984",
    "RAINBOW_TOKEN": "",
    "RAINBOW_DATA_FORMAT": "",
    "RAINBOW_SIGNATURE_WINDOW": 10,
    "RAINBOW_API_SIGNATURE": "v2",
    "RAINBOW_DEDUP_DB": None,
    "RAINBOW_DEDUP_QOS": (2,),
}


def get_setting(name):
    from django.conf import settings
    return getattr(settings, name, _DEFAULTS.get(name, ""))


# ------------------------------------------------------------------ handlers

def rainbow(msg_type):
    """@rainbow(1001) makes the function the handler of message type 1001.
    It receives a RainbowRequest and returns a RainbowResponse (or data:
    dict/list -> JSON, str, bytes; None -> an empty reply)."""
    def decorated(func):
        key = int(msg_type)
        if key in handler_map and handler_map[key] is not func:
            warnings.warn("message type %d already has a handler (%s); %s replaces it" % (
                key, getattr(handler_map[key], "__name__", "?"), func.__name__),
                RuntimeWarning, stacklevel=2)
        handler_map[key] = func
        return func
    return decorated


def rainbow_connect(func):
    """The connect hook's handler. It gets a RainbowRequest that also
    answers as the Django request (request.GET, request.META,
    request.rbidentity); return RainbowResponse({"status": "success"}) (or
    None) to admit, with .sub()/.context as needed, or
    RainbowResponse().refuse("why") / False to refuse (HTTP 401)."""
    handler_map["connect"] = func
    return func


def rainbow_close(func):
    handler_map["close"] = func
    return func


_discovered = [False]
_discover_lock = threading.Lock()


def discover_handlers():
    """Import <app>.rainbow for every installed app that has one. Unlike the
    original, an error inside such a module is raised, not swallowed."""
    with _discover_lock:
        if _discovered[0]:
            return
        from django.utils.module_loading import autodiscover_modules
        autodiscover_modules("rainbow")
        _discovered[0] = True


def get_handler(name):
    discover_handlers()
    return handler_map.get(name)


# ------------------------------------------------------------------ backend

_backend = {}


def get_backend():
    """The rainbow_backend.Backend serving the views, built from settings."""
    discover_handlers()
    fmt = get_setting("RAINBOW_DATA_FORMAT") or "raw"
    key = (get_setting("RAINBOW_TOKEN"), int(get_setting("RAINBOW_SIGNATURE_WINDOW")),
           "json" if fmt == "json" else "raw", get_setting("RAINBOW_DEDUP_DB"),
           tuple(get_setting("RAINBOW_DEDUP_QOS")))
    with _discover_lock:
        b = _backend.get(key)
        if b is None:
            store = SQLiteStore(key[3]) if key[3] else "memory"
            b = Backend(key[0], window=key[1], data_format=key[2], store=store,
                        dedup_qos=key[4], handlers=handler_map)
            _backend.clear()
            _backend[key] = b
    return b


# ------------------------------------------------------------------ REST

def rest_client(timeout=10.0):
    return RestClient(get_setting("RAINBOW_SERVER_URL"), get_setting("RAINBOW_TOKEN"),
                      signature=get_setting("RAINBOW_API_SIGNATURE") or "v2", timeout=timeout)


def signature(token=None):
    """{"timestamp", "nonce", "signature"}: a v1 signature, as the original's."""
    return signed_query_v1(get_setting("RAINBOW_TOKEN") if token is None else token)


def send(channel, msg_type, data, qos=0, timeout=10, ignore_result=True, identity=None,
         device=None):
    """Push data (JSON-encoded unless bytes) to a channel (or, new, to one
    connection with identity= or a device with device=, channel None).
    Returns (connections, status, msg) as the original: (None, None, None)
    when the gateway could not be reached (logged)."""
    payload = data if isinstance(data, (bytes, bytearray)) else _json(data)
    target = {"identity": identity} if identity else {"device": device} if device else \
        {"channel": channel}
    try:
        r = rest_client().call("POST", "/send/", [next(iter(target.items())),
                                                  ("msgtype", int(msg_type)), ("qos", int(qos)),
                                                  ("timeout", timeout)],
                               payload, timeout=float(timeout) + 5, check=False)
    except RestError as e:
        log.error("send to rainbow failed: %s", e)
        return None, None, None
    log.info("send to rainbow: connections=%s status=%s msg=%s", r.get("connections"),
             r.get("status"), r.get("msg"))
    return r.get("connections"), r.get("status"), r.get("msg")


def _json(data):
    import json
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def subscribe(channel, client, cancel=False, occupy=False):
    """Subscribe the connection `client` (an identity) to channel, or
    unsubscribe it (cancel=True). True when the gateway answered status 0."""
    api = rest_client(timeout=5)
    try:
        if cancel:
            api.unsub(client, channel)
        else:
            api.sub(client, channel, occupy=occupy)
        return True
    except RestError as e:
        log.error("%s %s -> %s failed: %s", "unsub" if cancel else "sub", client, channel, e)
        return False


def unsubscribe(channel, client):
    return subscribe(channel, client, True)
