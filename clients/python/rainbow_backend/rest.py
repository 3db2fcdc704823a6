"""A client of the gateway's REST API (docs/rest-api.md), signed with v2
(HMAC over the whole request, the default) or v1 (the original's scheme).

    api = RestClient("http://127.0.0.1:1984", token="...")
    api.send({"m": 1}, channel="room", msgtype=1002, qos=1)
    api.sub(identity, "room", occupy=True)
    api.presence("room")

Every method returns the gateway's JSON answer (a dict) when its "status"
is 0 and raises RestError otherwise (also for a transport failure or an
answer that is not JSON), in both rest_status_codes modes.
"""
import http.client
import json
import urllib.parse

from .signing import signed_query_v1, signed_query_v2

__all__ = ["RestClient", "RestError"]


class RestError(Exception):
    """A call that did not succeed. msg: the gateway's "msg" ("signature
    error", "no such connection", "timeout"...) or a transport error;
    result: the whole JSON answer (None without one); http_status."""

    def __init__(self, msg, result=None, http_status=None):
        super().__init__(msg)
        self.msg = msg
        self.result = result
        self.http_status = http_status


def _payload(body):
    if body is None:
        return b"", None
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body), "application/octet-stream"
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain; charset=utf-8"
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), \
        "application/json"


class RestClient:
    """url: the gateway's base URL (its main port or api_port); token: its
    security_token; signature: "v2" (default) or "v1"; timeout: seconds for
    calls other than /send/ (which waits for its own timeout plus 5 s)."""

    def __init__(self, url="http://127.0.0.1:1984", token="", signature="v2", timeout=10.0):
        u = urllib.parse.urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError("url must be http(s)://host[:port][/prefix]: %r" % url)
        if signature not in ("v1", "v2"):
            raise ValueError("signature must be 'v1' or 'v2'")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.token = token
        self.signature = signature
        self.timeout = timeout

    # ------------------------------------------------------------ transport
    def target(self, method, path, query=None, body=b""):
        """The signed path?query of a call (path as the gateway sees it)."""
        full = self.prefix + path
        pairs = list(query.items() if hasattr(query, "items") else (query or []))
        pairs = [(k, str(v)) for k, v in pairs if v is not None]
        if self.signature == "v1":
            pairs += list(signed_query_v1(self.token).items())
        else:
            pairs = signed_query_v2(self.token, method, full, pairs, body)
        return full + "?" + urllib.parse.urlencode(pairs, quote_via=urllib.parse.quote)

    def call(self, method, path, query=None, body=None, timeout=None, check=True):
        """One signed call; the JSON answer. check: raise RestError unless
        its status is 0."""
        data, ctype = _payload(body)
        target = self.target(method, path, query, data)
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=timeout or self.timeout)
        try:
            headers = {"Content-Type": ctype} if ctype else {}
            conn.request(method, target, body=data if body is not None else None,
                         headers=headers)
            r = conn.getresponse()
            raw = r.read()
            status = r.status
        except (OSError, http.client.HTTPException) as e:
            raise RestError("%s %s: %s" % (method, path, e)) from e
        finally:
            conn.close()
        try:
            result = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise RestError("%s %s: HTTP %d, not JSON: %r" % (method, path, status, raw[:200]),
                            None, status) from None
        if check and (not isinstance(result, dict) or result.get("status") != 0):
            msg = result.get("msg") if isinstance(result, dict) else None
            raise RestError(msg or "HTTP %d" % status, result, status)
        return result

    # ------------------------------------------------------------ endpoints
    def send(self, payload, channel=None, identity=None, device=None, msgtype=1, qos=2,
             timeout=10):
        """POST /send/ to exactly one of channel, identity or device. payload:
        bytes/str as they are, anything else as JSON. QoS 1/2 wait for the
        recipients' acknowledgements up to timeout seconds: the answer has
        connections (acknowledged), failed, pending and data (the first
        acknowledgement's payload). Defaults as the gateway's: type 1, QoS 2."""
        targets = [t for t in (("channel", channel), ("identity", identity),
                               ("device", device)) if t[1] is not None]
        if len(targets) != 1:
            raise ValueError("send: give exactly one of channel, identity, device")
        query = [targets[0], ("msgtype", int(msgtype)), ("qos", int(qos)),
                 ("timeout", timeout)]
        return self.call("POST", "/send/", query, payload if payload is not None else b"",
                         timeout=float(timeout) + 5)

    def batch(self, messages, timeout=30):
        """POST /batch/: up to 1,000 pushes in one call. messages: dicts with
        one of channel/identity/device, and qos, msgtype, timeout, data (str)
        or data_base64 as /send/ takes them. Returns the list of results, one
        per message, in order (each as /send/ would have answered)."""
        return self.call("POST", "/batch/", body={"messages": list(messages)},
                         timeout=float(timeout) + 5)["results"]

    def sub(self, identity, channel, occupy=False):
        """Subscribe a connection; occupy=True first removes every other
        member of the channel."""
        body = {"identity": identity, "channel": channel}
        if occupy:
            body["occupy"] = True
        return self.call("POST", "/sub/", body=body)

    def unsub(self, identity, channel):
        return self.call("POST", "/unsub/", body={"identity": identity, "channel": channel})

    def kick(self, identity, code=None, reason=None):
        """Close a connection (default code 4000, reason "kicked")."""
        body = {"identity": identity}
        if code is not None:
            body["code"] = int(code)
        if reason is not None:
            body["reason"] = reason
        return self.call("POST", "/kick/", body=body)

    def presence(self, channel):
        """The channel's connections: [{"identity", "device", "platform"}]."""
        return self.call("GET", "/presence/", {"channel": channel})["connections"]

    def channels(self):
        """{channel: members}."""
        return {name: n for name, n in self.call("GET", "/channels/")["channels"]}

    def hello(self):
        """True when the gateway answers GET /hello/ (unsigned)."""
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.request("GET", self.prefix + "/hello/")
            r = conn.getresponse()
            return r.status == 200 and r.read().strip() == b"ok"
        except (OSError, http.client.HTTPException):
            return False
        finally:
            conn.close()
