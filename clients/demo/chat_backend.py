#!/usr/bin/python3
"""The chat demo's backend (`make demo`), built on clients/python's
rainbow_backend and serving a chat page that uses clients/js.

    GET  /                     the chat page (static/index.html)
    GET  /js/...               the JavaScript client (clients/js/src/)
    GET  /token?name=N         a connection token for N (JSON {token, ws})
    POST /rainbow/msg/1/       join a room: subscribes the connection to it
                               (RAINBOWCLIENTCHANNEL), replies with its history
    POST /rainbow/msg/2/       say something (QoS 2 from the page: exactly
                               once, replayed from the store on a DUP): stored,
                               pushed to the room, replied with its number
    GET  /rainbow/close        close hook: logged

A message's way, as the page shows it: "sending" (not yet answered), "sent"
(the backend stored it: the QoS 2 reply), "delivered to N" (the backend's
push to the room came back with N acknowledgements; told to the sender with
a push of type 3), with ", M queued" for members whose session keeps it
until they are back. Pushes leave from one thread, in order; while the
gateway is down they are retried until it is back, so a gateway restart
loses nothing: the page's sends wait in the JavaScript client, its pushes
wait here, and each device's session keeps what it missed.

    chat_backend.py -f build/demo/rainbow.ini [--port 8000]

Standard library only. An example, not a production chat server: history
is in memory.
"""
import argparse
import configparser
import json
import logging
import mimetypes
import os
import queue
import sys
import threading
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))

from rainbow_backend import (Backend, InvalidRequest, RainbowResponse, RestClient,  # noqa: E402
                             RestError, mint_token)

log = logging.getLogger("chat")

JOIN, SAY, RECEIPT, CHAT = 1, 2, 3, 4    # message types (page <-> backend)
HISTORY = 50


class Chat:
    def __init__(self, rest, secret, ws_url):
        self.rest = rest
        self.secret = secret
        self.ws_url = ws_url
        self.lock = threading.Lock()
        self.rooms = {}                # room -> [message]
        self.seq = 0
        self.out = queue.Queue()       # pushes to make, in order
        threading.Thread(target=self.pusher, daemon=True).start()

    def join(self, request):
        room = room_name(request.data)
        with self.lock:
            hist = list(self.rooms.get(room, [])[-HISTORY:])
        log.info("%s joins %s", who(request), room)
        return RainbowResponse({"room": room, "history": hist}).sub("room:" + room)

    def say(self, request):
        d = request.data if isinstance(request.data, dict) else {}
        room, text, cid = room_name(d), d.get("text"), d.get("cid")
        if not isinstance(text, str) or not text.strip() or len(text) > 2000:
            raise InvalidRequest("text must be 1 to 2000 characters")
        if not isinstance(cid, str) or len(cid) > 64:
            raise InvalidRequest("cid (the page's id of the message) is required")
        with self.lock:
            self.seq += 1
            m = {"id": self.seq, "cid": cid, "room": room, "from": who(request),
                 "text": text, "ts": time.time()}
            self.rooms.setdefault(room, []).append(m)
        self.out.put((m, request.identity))
        log.info("#%d in %s from %s", m["id"], room, m["from"])
        return {"id": m["id"]}

    def pusher(self):
        """Each message to its room (QoS 1: the receipt counts who got it),
        then the count to its sender; retried while the gateway is down."""
        while True:
            m, sender = self.out.get()
            r = self.retry(lambda: self.rest.send(
                json.dumps(m), channel="room:" + m["room"], msgtype=CHAT, qos=1, timeout=5))
            n = r.get("connections", 0) if isinstance(r, dict) else 0
            queued = r.get("pending", 0) if isinstance(r, dict) else 0
            if sender:
                self.retry(lambda: self.rest.send(
                    json.dumps({"cid": m["cid"], "id": m["id"], "delivered": n,
                                "queued": queued}),
                    identity=sender, msgtype=RECEIPT, qos=1, timeout=5), give_up_on_404=True)

    @staticmethod
    def retry(call, give_up_on_404=False):
        wait = 0.2
        while True:
            try:
                return call()
            except RestError as e:
                if give_up_on_404 and (e.http_status == 404 or "no such" in str(e)):
                    return None      # the sender left: nobody to tell
                log.warning("push failed (%s); retrying", e)
            except OSError as e:
                log.warning("gateway unreachable (%s); retrying", e)
            time.sleep(wait)
            wait = min(wait * 2, 2.0)

    def token(self, name):
        name = (name or "").strip()[:40]
        if not name:
            return None
        return {"token": mint_token(self.secret, name, expires_in=3600, info={"name": name}),
                "ws": self.ws_url}


def room_name(d):
    room = d.get("room") if isinstance(d, dict) else None
    if not isinstance(room, str) or not room.strip() or len(room) > 40:
        raise InvalidRequest("room must be 1 to 40 characters")
    return room.strip()


def who(request):
    ctx = request.context if isinstance(request.context, dict) else {}
    return ctx.get("sub") or "anonymous"


def make_app(chat, backend):
    static = os.path.join(HERE, "static")
    js = os.path.join(ROOT, "clients", "js", "src")

    def file_response(start_response, base, rel):
        path = os.path.realpath(os.path.join(base, rel))
        if not path.startswith(os.path.realpath(base) + os.sep) or not os.path.isfile(path):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        if path.endswith((".js", ".mjs")):
            ctype = "text/javascript"
        with open(path, "rb") as f:
            body = f.read()
        start_response("200 OK", [("Content-Type", ctype + "; charset=utf-8"),
                                  ("Cache-Control", "no-store")])
        return [body]

    def app(environ, start_response):
        path = environ.get("PATH_INFO", "/")
        if path.startswith("/rainbow/"):
            return backend.wsgi(environ, start_response)
        if path == "/token":
            q = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
            t = chat.token((q.get("name") or [""])[0])
            status = "200 OK" if t else "400 Bad Request"
            start_response(status, [("Content-Type", "application/json"),
                                    ("Cache-Control", "no-store")])
            return [json.dumps(t or {"error": "name required"}).encode()]
        if path == "/":
            return file_response(start_response, static, "index.html")
        if path.startswith("/js/"):
            return file_response(start_response, js, path[4:])
        return file_response(start_response, static, path.lstrip("/"))
    return app


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-f", "--conf", required=True, help="the gateway's configuration")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="chat: %(message)s")
    cp = configparser.ConfigParser(inline_comment_prefixes=(";",))
    cp.read(args.conf)
    c = cp["main"]
    port = int(c.get("port", "1984"))
    secret = c.get("token_secret", "")
    if not secret:
        sys.exit("chat_backend: the gateway's configuration has no token_secret")
    rest = RestClient("http://127.0.0.1:%d" % port, token=c.get("security_token", ""),
                      signature="v1")
    chat = Chat(rest, secret, "ws://%s:%d/connect/" % (args.host, port))
    backend = Backend(token=c.get("security_token", ""))
    backend.message(JOIN)(chat.join)
    backend.message(SAY)(chat.say)
    backend.close(lambda req: log.info("%s left", who(req)))
    from rainbow_backend import serve_wsgi
    srv = serve_wsgi(make_app(chat, backend), args.host, args.port)
    log.info("chat page on http://%s:%d/", args.host, args.port)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
