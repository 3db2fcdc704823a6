#!/usr/bin/python3
"""A tiny application backend for trying Rainbow without writing one.

Standard library only (built on clients/python/rainbow_backend). `make run`
starts it beside the gateway on the configuration the gateway uses
(conf/rainbow.ini), so the two agree on the address and the
security_token. What it does (docs/protocol.md):

    GET  /rainbow/connect   connect hook: admits every client and, when the
                            client's upgrade URL had ?channel=<name>, joins it
                            to that channel (RAINBOWCLIENTCHANNEL)
    POST /rainbow/msg/<type>/
                            forward: the reply (ACK/REC payload) is the
                            message's own payload (an echo)
    GET  /rainbow/close     close hook: logged

Every call must carry a valid v1 signature with a fresh timestamp; a bad
one is answered 403 and logged ("bad signature"). A QoS 2 message the
gateway forwards again after a crash (RAINBOWDUP) gets the reply it got
the first time (rainbow_backend's store, in memory).

    example_backend.py -f conf/rainbow.ini     address from forward_url,
                                               token from security_token
    example_backend.py --port 8000 --token T   or say them directly

It is an example, not a production server: a log line per call on stderr.
"""
import argparse
import configparser
import logging
import os
import sys
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from rainbow_backend import Backend, RainbowResponse  # noqa: E402

log = logging.getLogger("example_backend")


def make_backend(token):
    backend = Backend(token, data_format="raw")

    @backend.connect
    def connect(request):
        # Each query argument of the client's upgrade URL arrives as a
        # request header: ws://.../connect/?channel=room -> "channel: room".
        channel = request.header("channel", "")
        log.info("connect %s%s", (request.identity or "?")[:12],
                 " -> channel %s" % channel if channel else "")
        response = RainbowResponse(request=request)
        if channel:
            response.sub(channel)
        return response

    @backend.message()          # every message type
    def echo(request):
        log.info("message type %s from %s (QoS %s): %r", request.msg_type,
                 (request.identity or "?")[:12], request.qos, request.body[:80])
        return request.body

    @backend.close
    def close(request):
        log.info("close %s", (request.identity or "?")[:12])

    return backend


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
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="example_backend: %(message)s")
    try:
        srv = make_backend(token).make_server(host, port)
    except OSError as e:
        sys.exit("example_backend: cannot listen on %s:%d: %s" % (host, port, e.strerror))
    sys.stderr.write("example_backend: listening on http://%s:%d/rainbow/\n" % (host, port))
    sys.stderr.flush()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
