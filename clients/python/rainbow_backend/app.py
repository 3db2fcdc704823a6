"""The backend side of the gateway's three calls, independent of any web
framework: Backend.handle() takes (method, path, query, headers, body) and
returns (status, headers, body). Adapters: Backend.wsgi() (any WSGI
server), Backend.serve() (a small threaded HTTP/1.1 server, keep-alive),
and rainbow_django.

    backend = Backend(token="...")

    @backend.connect
    def on_connect(request):                # GET <connect_url>
        return RainbowResponse().sub("lobby")

    @backend.message(1)
    def on_chat(request):                   # POST <forward_url>1/
        return {"ok": True}                 # the ACK/REC payload

    @backend.close
    def on_close(request): ...              # GET <close_url>

Every call's v1 signature and timestamp are checked (a bad one: HTTP 403,
logged). A message type without a handler is refused with
RAINBOWREQUESTINVALID (NAK 422 "unknown message type N" for a rainbow.v2
client), never answered with an empty ACK. A handler that raises gets HTTP
500 (the gateway NAKs 502, temporary) and a logged traceback. QoS 2
forwards (and QoS 1 with dedup_qos=(1, 2)) go through the store (store.py).
"""
import http.server
import logging
import re
import socketserver
import traceback
import urllib.parse
from wsgiref.simple_server import WSGIServer, WSGIRequestHandler, make_server

from .messages import (H_COOKIE, H_DUP, H_IDENTITY, H_INVALID, H_MESSAGE_ID, H_QOS,
                       Headers, InvalidRequest, RainbowRequest, RainbowResponse,
                       decode_context)
from .signing import DEFAULT_WINDOW, SignatureError, check_v1
from .store import MemoryStore, fingerprint

__all__ = ["Backend", "DEFAULT_ROUTES", "serve_wsgi"]

log = logging.getLogger("rainbow_backend")

# connect/, close/, message/<type>/ (rainbow-django's URLs) and msg/<type>/
# (the example backend's), under any prefix, trailing slash optional.
DEFAULT_ROUTES = re.compile(r".*?/(?:(?P<hook>connect|close)|(?:message|msg)/(?P<type>\d+))/?\Z")

REPLAYED = "X-Rainbow-Replayed"


def _json_error(status, msg, extra=()):
    body = ('{"status":1,"msg":"%s"}' % msg.replace('"', "'")).encode()
    return status, [("Content-Type", "application/json")] + list(extra), body


def _first_values(query):
    if query is None:
        return {}
    if isinstance(query, (str, bytes)):
        query = urllib.parse.parse_qsl(query if isinstance(query, str) else query.decode(),
                                       keep_blank_values=True)
    items = query.items() if hasattr(query, "items") else query
    out = {}
    for k, v in items:
        if isinstance(v, (list, tuple)):
            v = v[0] if v else ""
        out.setdefault(k, v)
    return out


class Backend:
    """Handlers for one gateway (one security_token).

    token        the gateway's security_token
    window       seconds of clock skew accepted on a call's timestamp (10,
                 the gateway's signature_window default)
    data_format  "json": request.data is the payload parsed as JSON (a
                 payload that is not JSON is refused, NAK 422); "raw": bytes
    store        MemoryStore() by default, SQLiteStore(path) to survive
                 backend restarts; None turns deduplication off
    dedup_qos    the QoS levels answered from the store on RAINBOWDUP (2)
    handlers     a dict to keep the handlers in (keys: message types as int,
                 "connect", "close", None for the default message handler)
    """

    def __init__(self, token, window=DEFAULT_WINDOW, data_format="json", store="memory",
                 dedup_qos=(2,), handlers=None, routes=DEFAULT_ROUTES):
        if data_format not in ("json", "raw"):
            raise ValueError("data_format must be 'json' or 'raw'")
        self.token = token
        self.window = window
        self.data_format = data_format
        self.store = MemoryStore() if store == "memory" else store
        self.dedup_qos = tuple(dedup_qos)
        self.handlers = {} if handlers is None else handlers
        self.routes = routes

    # ------------------------------------------------------------ registration
    def connect(self, fn):
        self.handlers["connect"] = fn
        return fn

    def close(self, fn):
        self.handlers["close"] = fn
        return fn

    def message(self, msg_type=None):
        """@backend.message(7) handles type 7; @backend.message() every type
        that has no handler of its own."""
        if callable(msg_type):          # used bare: @backend.message
            self.handlers[None] = msg_type
            return msg_type

        def register(fn):
            key = None if msg_type is None else int(msg_type)
            self.handlers[key] = fn
            return fn
        return register

    on = message

    def handler_for(self, msg_type):
        fn = self.handlers.get(msg_type)
        if fn is None:
            fn = self.handlers.get(str(msg_type))
        if fn is None:
            fn = self.handlers.get(None)
        return fn

    # ------------------------------------------------------------ dispatch
    def route(self, path):
        """("connect" | "close" | "message", msg_type or None), or None."""
        m = self.routes.match(path)
        if not m:
            return None
        if m.group("hook"):
            return m.group("hook"), None
        return "message", int(m.group("type"))

    def handle(self, method, path, query, headers, body=b"", http=None):
        """One call from the gateway -> (status, [(name, value)], body)."""
        where = self.route(path)
        if where is None:
            return _json_error(404, "not found")
        kind, msg_type = where
        if kind == "message" and method != "POST":
            return _json_error(405, "a forward is a POST")
        return self.dispatch(kind, msg_type, method, path, query, headers, body, http)

    def dispatch(self, kind, msg_type, method, path, query, headers, body=b"", http=None):
        q = _first_values(query)
        try:
            check_v1(self.token, q.get("timestamp"), q.get("nonce"), q.get("signature"),
                     window=self.window)
        except SignatureError as e:
            log.warning("bad signature on %s %s: %s", method, path, e)
            return _json_error(403, "signature error", [(H_INVALID, "signature error")])
        h = headers if isinstance(headers, Headers) else Headers(headers or ())
        cookie = h.get(H_COOKIE)
        try:
            context = decode_context(cookie)
        except ValueError as e:
            log.info("%s: cookie kept as it is (request.cookie): %s", kind, e)
            context = {}
        try:
            qos = int(h.get(H_QOS) or 0)
        except ValueError:
            qos = 0
        req = RainbowRequest(
            h.get(H_IDENTITY), kind if kind != "message" else msg_type, None, context,
            kind=kind, body=body or b"", headers=h, query=q, cookie=cookie, qos=qos,
            message_id=h.get(H_MESSAGE_ID) or None, dup=(h.get(H_DUP) or "0").strip() == "1",
            http=http)
        if kind == "connect":
            return self._hook(req, "connect")
        if kind == "close":
            return self._hook(req, "close")
        return self._message(req)

    def _hook(self, req, kind):
        fn = self.handlers.get(kind)
        if fn is None:
            return RainbowResponse(request=req).render(self.data_format, "connect")
        try:
            out = fn(req)
        except Exception:
            log.error("%s handler failed:\n%s", kind, traceback.format_exc())
            return _json_error(500, "%s handler failed" % kind)
        if kind == "close":
            # the gateway does not read the close hook's answer
            return 200, [("Content-Type", "application/json")], b'{"status":"success"}'
        if out is False:
            out = RainbowResponse(request=req).refuse()
        return self._render(out, req, "connect")

    def _render(self, out, req, kind):
        """A handler's return value as (status, headers, body)."""
        if (isinstance(out, tuple) and len(out) == 3 and isinstance(out[0], int)
                and isinstance(out[1], list) and isinstance(out[2], bytes)):
            return out                          # already (status, headers, body)
        if out is None or out is True:
            out = RainbowResponse(request=req)
        elif not isinstance(out, RainbowResponse):
            out = RainbowResponse(out, req)
        return out.render(self.data_format, kind)

    def _message(self, req):
        fn = self.handler_for(req.msg_type)
        if fn is None:
            log.info("message type %s from %s: no handler, refused", req.msg_type,
                     (req.identity or "?")[:12])
            return _json_error(200, "unknown message type",
                               [(H_INVALID, "unknown message type %d" % req.msg_type)])
        if self.data_format == "json":
            try:
                req.data = req.json()
            except (ValueError, UnicodeDecodeError):
                return _json_error(200, "payload is not JSON",
                                   [(H_INVALID, "payload is not JSON")])
        else:
            req.data = req.body

        def run(db):
            req.db = db
            try:
                try:
                    out = fn(req)
                except InvalidRequest as e:
                    out = RainbowResponse(request=req).invalid(e.reason)
                resp = self._render(out, req, "message")
            finally:
                req.db = None
            # 2xx answers are final (a refusal included); others may be retried
            return resp, 200 <= resp[0] < 300

        dedup = (self.store is not None and req.qos in self.dedup_qos and req.message_id)
        try:
            if not dedup:
                return run(None)[0]
            resp, replayed = self.store.run(req.message_id, req.dup,
                                            fingerprint(req.msg_type, req.body), run)
        except Exception:
            log.error("handler of message type %s failed:\n%s", req.msg_type,
                      traceback.format_exc())
            return _json_error(500, "backend handler error")
        if replayed:
            log.info("message %s (type %s): duplicate, stored reply sent again",
                     req.message_id, req.msg_type)
            status, headers, body = resp
            return status, list(headers) + [(REPLAYED, "1")], body
        return resp

    # ------------------------------------------------------------ WSGI
    def wsgi(self, environ, start_response):
        """A WSGI application: mount it where connect_url, forward_url and
        close_url point (paths ending in connect/, close/, message/<type>/
        or msg/<type>/)."""
        path = environ.get("PATH_INFO", "")
        # WSGI hands headers as latin-1 text: back to the bytes, then UTF-8
        headers = []
        for k, v in environ.items():
            if k.startswith("HTTP_"):
                headers.append((k[5:].replace("_", "-"), _wsgi_text(v)))
        try:
            n = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            n = 0
        body = environ["wsgi.input"].read(n) if n > 0 else b""
        status, hdrs, out = self.handle(environ.get("REQUEST_METHOD", "GET"),
                                        _wsgi_text(environ.get("SCRIPT_NAME", "")) +
                                        _wsgi_text(path), environ.get("QUERY_STRING", ""),
                                        headers, body)
        hdrs = [(k, _wsgi_header(v)) for k, v in hdrs] + [("Content-Length", str(len(out)))]
        start_response("%d %s" % (status, http.server.BaseHTTPRequestHandler.responses.get(
            status, ("Status",))[0]), hdrs)
        return [out]

    __call__ = wsgi

    # ------------------------------------------------------------ HTTP server
    def make_server(self, host="127.0.0.1", port=8000):
        """A threaded HTTP/1.1 server (keep-alive: the gateway pools its
        connections) answering with this backend. Call serve_forever()."""
        backend = self

        class Handler(_Handler):
            pass
        Handler.backend = backend
        srv = _Server((host, port), Handler)
        return srv

    def serve(self, host="127.0.0.1", port=8000):
        srv = self.make_server(host, port)
        try:
            srv.serve_forever()
        finally:
            srv.server_close()


def _wsgi_text(v):
    try:
        return v.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return v


def _wsgi_header(v):
    try:
        v.encode("latin-1")
        return v
    except UnicodeEncodeError:
        return v.encode("utf-8").decode("latin-1")


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    # The gateway opens many pooled connections at once: the default
    # backlog of 5 overflowed and cost clients 1 s SYN retransmits.
    request_queue_size = 1024


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    backend = None
    # Headers and body leave in two writes: without TCP_NODELAY a reused
    # keep-alive connection waited ~40 ms (Nagle + delayed ACK) per call.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)

    def _any(self):
        try:
            n = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            n = 0
        body = self.rfile.read(n) if n > 0 else b""
        url = urllib.parse.urlsplit(self.path)
        headers = [(k, _wsgi_text(v)) for k, v in self.headers.items()]
        status, hdrs, out = self.backend.handle(self.command, url.path, url.query, headers, body)
        self.send_response(status)
        for k, v in hdrs:
            self.send_header(k, _wsgi_header(v))
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _any


class _ThreadingWSGIServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 1024


class _QuietWSGIHandler(WSGIRequestHandler):
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        log.debug("%s " + fmt, self.address_string(), *args)


def serve_wsgi(app, host="127.0.0.1", port=8000):
    """A threaded wsgiref server for any WSGI app (a Backend, Django's
    get_wsgi_application()...): for development and tests. Returns the
    server; call serve_forever()."""
    return make_server(host, port, app, server_class=_ThreadingWSGIServer,
                       handler_class=_QuietWSGIHandler)
