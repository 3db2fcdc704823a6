#!/usr/bin/python3
"""A tiny application backend for trying Rainbow without writing one.

Standard library only. `make run` starts it beside the gateway on the
configuration the gateway uses (conf/rainbow.ini), so the two agree on the
address and the security_token. What it does (docs/protocol.md):

    GET  /rainbow/connect   connect hook: admits every client and, when the
                            client's upgrade URL had ?channel=<name>, joins it
                            to that channel (RAINBOWCLIENTCHANNEL)
    POST /rainbow/msg/<type>/
                            forward: the reply (ACK/REC payload) is the
                            message's own payload (an echo)
    GET  /rainbow/close     close hook: logged

Every call must carry a valid v1 signature (timestamp, nonce, signature in
the query, signature = sha1 of the sorted concatenation of security_token,
timestamp and nonce); a bad one is answered 403 and logged.

    example_backend.py -f conf/rainbow.ini     address from forward_url,
                                               token from security_token
    example_backend.py --port 8000 --token T   or say them directly

It is an example, not a production server: one request at a time per
thread, no persistence, a log line per call on stderr.
"""
import argparse
import configparser
import hashlib
import hmac
import http.server
import sys
import time
import urllib.parse

WINDOW = 10  # seconds of clock skew accepted, like the gateway's default


def sign_v1(token, timestamp, nonce):
    """hex(sha1(concat(sorted([token, timestamp, nonce])))), byte order."""
    parts = sorted([token.encode(), timestamp.encode(), nonce.encode()])
    return hashlib.sha1(b"".join(parts)).hexdigest()


def signature_ok(token, query):
    ts, nonce, sig = (query.get(k, [""])[0] for k in ("timestamp", "nonce", "signature"))
    if not (ts.isdigit() and nonce and sig):
        return False
    if abs(int(ts) - time.time()) > WINDOW:
        return False
    return hmac.compare_digest(sign_v1(token, ts, nonce), sig)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the gateway pools connections
    token = ""

    def log_request(self, code="-", size="-"):
        pass  # one line per call, written by the handlers, is enough

    def log_message(self, fmt, *args):
        sys.stderr.write("example_backend: " + (fmt % args) + "\n")

    def reply(self, status, body, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def checked(self):
        """Parse the target; answer 403 and return None when the signature is bad."""
        url = urllib.parse.urlsplit(self.path)
        if not signature_ok(self.token, urllib.parse.parse_qs(url.query)):
            self.log_message("bad signature on %s %s", self.command, url.path)
            self.reply(403, b'{"status":1,"msg":"signature error"}')
            return None
        return url.path

    def do_GET(self):
        path = self.checked()
        if path is None:
            return
        identity = self.headers.get("RAINBOWCLIENTIDENTITY", "?")
        if path == "/rainbow/connect":
            # Each query argument of the client's upgrade URL arrives as a
            # request header: ws://.../connect/?channel=room -> "channel: room".
            channel = self.headers.get("channel", "")
            headers = [("RAINBOWCLIENTCHANNEL", channel)] if channel else []
            self.log_message("connect %s%s", identity[:12],
                             " -> channel %s" % channel if channel else "")
            self.reply(200, b'{"status":"success"}', headers)
        elif path == "/rainbow/close":
            self.log_message("close %s", identity[:12])
            self.reply(200, b'{"status":"success"}')
        else:
            self.reply(404, b'{"status":1,"msg":"not found"}')

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        path = self.checked()
        if path is None:
            return
        if not path.startswith("/rainbow/msg/"):
            self.reply(404, b'{"status":1,"msg":"not found"}')
            return
        msgtype = path[len("/rainbow/msg/"):].strip("/")
        self.log_message("message type %s from %s (QoS %s): %r", msgtype,
                         self.headers.get("RAINBOWCLIENTIDENTITY", "?")[:12],
                         self.headers.get("RAINBOWQOS", "?"), body[:80])
        self.reply(200, body)


def from_config(path):
    """(host, port, token) from a rainbow.ini's forward_url and security_token."""
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    with open(path) as f:
        cp.read_file(f)
    main = cp["main"]
    url = urllib.parse.urlsplit(main.get("forward_url", ""))
    if not url.hostname:
        sys.exit("example_backend: %s has no forward_url" % path)
    return url.hostname, url.port or 80, main.get("security_token", "")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-f", "--config", help="read address and token from this rainbow.ini")
    ap.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    ap.add_argument("--port", type=int, help="port to listen on (default 8000)")
    ap.add_argument("--token", help="security_token shared with the gateway")
    a = ap.parse_args()
    host, port, token = "127.0.0.1", 8000, ""
    if a.config:
        host, port, token = from_config(a.config)
    host = a.host or host
    port = a.port or port
    token = a.token if a.token is not None else token
    Handler.token = token
    try:
        srv = http.server.ThreadingHTTPServer((host, port), Handler)
    except OSError as e:
        sys.exit("example_backend: cannot listen on %s:%d: %s" % (host, port, e.strerror))
    srv.daemon_threads = True
    sys.stderr.write("example_backend: listening on http://%s:%d/rainbow/\n" % (host, port))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
