"""23 Python helper, Django adapter (clients/python/rainbow_django): a real
Django project (django-admin runserver, the development server) whose app
has handlers like the original rainbow-django demo's, written for the
original's API (only the import would change), against the real gateway:
a connect handler that reads the Django request, sets the context and a
channel; a handler that joins a room through the REST API and announces
itself there; one that speaks using the context kept in the cookie; one
that moves channels with .sub()/.unsub() in its response (the call that
broke the original's response); an unknown type (the original ACKed
"None"; now NAK 422); a close handler that sees the context. Also: stale
timestamps refused, QoS 2 replies replayed, and an error inside an app's
rainbow.py stopping the start instead of being swallowed."""
import json
import textwrap
import urllib.parse

import pytest

import rainbow as rb
from rainbow import Client, run
from py_helper import Proc, env_with_clients, lines

django = pytest.importorskip("django", reason="python3-django is not installed")

DEMO = '''
from rainbow_django import (RainbowResponse, rainbow, rainbow_close, rainbow_connect, send,
                            subscribe, unsubscribe)

CLOSED = %(closed)r


@rainbow_connect
def on_connect(request):
    # written for rainbow-django: the connect handler gets the Django request
    rsp = RainbowResponse({"status": "success"}, request)
    rsp.context["nick"] = request.META.get("HTTP_NICK", "guest")
    rsp.sub("lobby")
    return rsp


@rainbow_close
def on_close(request):
    with open(CLOSED, "a") as f:
        f.write("%%s %%s\\n" %% (request.rbidentity, request.context.get("nick")))
    return RainbowResponse({"status": "success"})


@rainbow(msg_type=0)
def join(rbrequest):
    nick = rbrequest.data["nick"]
    rsp = RainbowResponse({"status": "ok", "identity": rbrequest.identity}, rbrequest)
    rsp.context["nick"] = nick
    subscribe("room", rbrequest.identity)
    send("room", 1001, {"nick": nick, "identity": rbrequest.identity})
    return rsp


@rainbow(msg_type=1)
def say(rbrequest):
    send("room", 1002, {"nick": rbrequest.context["nick"], "text": rbrequest.data["text"]})
    return RainbowResponse({"status": "ok"}, rbrequest)


@rainbow(msg_type=2)
def move(rbrequest):
    rsp = RainbowResponse({"status": "moved"}, rbrequest)
    rsp.sub(rbrequest.data["to"])
    rsp.unsub("lobby")
    unsubscribe("room", rbrequest.identity)
    return rsp
'''

SETTINGS = '''
SECRET_KEY = "test-only"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
INSTALLED_APPS = ["rainbow_django"] + %(apps)r
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
ROOT_URLCONF = "djsite.urls"
DATABASES = {}
USE_TZ = True
RAINBOW_TOKEN = %(token)r
RAINBOW_SERVER_URL = "http://127.0.0.1:%(gw_port)d"
RAINBOW_DATA_FORMAT = "json"
RAINBOW_DEDUP_DB = %(dedup)r
LOGGING = {"version": 1, "handlers": {"err": {"class": "logging.StreamHandler"}},
           "loggers": {"rainbow_backend": {"handlers": ["err"], "level": "INFO"},
                       "rainbow_django": {"handlers": ["err"], "level": "INFO"}}}
'''

URLS = '''
from django.urls import include, path

urlpatterns = [path("rainbow/", include("rainbow_django.urls"))]
'''


def make_project(root, gw_port, apps=("demo",), extra=None):
    files = {
        "djsite/__init__.py": "",
        "djsite/settings.py": SETTINGS % {"apps": list(apps), "token": rb.TOKEN,
                                          "gw_port": gw_port, "dedup": str(root / "dedup.db")},
        "djsite/urls.py": URLS,
        "demo/__init__.py": "",
        "demo/rainbow.py": DEMO % {"closed": str(root / "closed")},
    }
    files.update(extra or {})
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(textwrap.dedent(text))


def django_server(root, port):
    env = env_with_clients()
    env["PYTHONPATH"] = str(root) + ":" + env["PYTHONPATH"]
    env["DJANGO_SETTINGS_MODULE"] = "djsite.settings"
    return Proc("django", [rb.PY, "-m", "django", "runserver", "--noreload",
                           "127.0.0.1:%d" % port], root, port=port, env=env)


@pytest.fixture
def dj(tmp_path):
    root = tmp_path / "proj"
    root.mkdir()
    procs = []

    def start(gw_port, **kw):
        make_project(root, gw_port, **kw)
        p = django_server(root, rb.free_port())
        procs.append(p)
        return p
    start.root = root
    yield start
    for p in procs:
        p.stop()
        print("---- django log ----\n" + p.log()[-4000:])


def urls(p):
    return {"connect_url": p.url("/rainbow/connect/"), "forward_url": p.url("/rainbow/message/"),
            "close_url": p.url("/rainbow/close/")}


def test_django_demo_handlers_against_the_gateway(gateway, dj):
    gw = gateway(start=False)
    site = dj(gw.port).start()
    gw.opts.update(urls(site))
    gw.conf = rb.write_conf(gw.conf, gw.opts)
    gw.start()

    async def body():
        c = await Client.open(gw, query={"nick": "guest7", "X-DEVICEID": "dj1"},
                              subprotocols=["rainbow.v2"])
        me = c.hello["identity"]
        assert gw.presence("lobby") == [me]

        async def exchange(msgtype, payload, msgid, n):
            await c.send(rb.send(msgtype, json.dumps(payload).encode(), qos=1, msgid=msgid))
            got = [await c.recv_pkt(10) for _ in range(n)]
            return {(p.cmd, p.msgtype if p.cmd == rb.SEND else p.msgid): p for p in got}

        got = await exchange(0, {"nick": "ann"}, 1, 2)
        assert json.loads(got[(rb.ACK, 1)].payload) == {"status": "ok", "identity": me}
        assert json.loads(got[(rb.SEND, 1001)].payload) == {"nick": "ann", "identity": me}
        assert gw.presence("room") == [me]
        got = await exchange(1, {"text": "hi"}, 2, 2)   # the nick comes from the cookie
        assert json.loads(got[(rb.SEND, 1002)].payload) == {"nick": "ann", "text": "hi"}
        assert json.loads(got[(rb.ACK, 2)].payload) == {"status": "ok"}
        got = await exchange(2, {"to": "stage"}, 3, 1)
        assert json.loads(got[(rb.ACK, 3)].payload) == {"status": "moved"}
        assert (gw.presence("stage"), gw.presence("lobby"), gw.presence("room")) == ([me], [], [])
        got = await exchange(7, {}, 4, 1)
        assert rb.nak_body(got[(rb.NAK, 4)]) == {"code": 422, "temporary": False,
                                                 "message": "unknown message type 7"}
        await c.close()
    run(body())
    rb.wait_until(lambda: lines(dj.root / "closed"), 10, what="the close handler")
    ident, nick = lines(dj.root / "closed")[0].split()
    assert nick == "ann" and len(ident) == 64

    # a stale (correctly signed) call is refused; a fresh one is not
    target = "/rainbow/message/1/?" + urllib.parse.urlencode(
        rb.signed_query(rb.TOKEN, now=rb.time.time() - 60))
    r = rb.http_request(site.port, "POST", target, body=b'{"text":"x"}',
                        headers={"RAINBOWCLIENTIDENTITY": "x" * 64})
    assert r.status == 403 and r.headers["rainbowrequestinvalid"] == "signature error"

    # QoS 2: a DUP of a stored reply is answered from the store (RAINBOW_DEDUP_DB)
    def qos2(dup):
        t = "/rainbow/message/1/?" + urllib.parse.urlencode(rb.signed_query(rb.TOKEN))
        h = {"RAINBOWCLIENTIDENTITY": "y" * 64, "RAINBOWQOS": "2",
             "RAINBOWMESSAGEID": "djdev:9", "RAINBOWCLIENTCOOKIE": "eyJuaWNrIjoiem9lIn0="}
        if dup:
            h["RAINBOWDUP"] = "1"
        return rb.http_request(site.port, "POST", t, body=b'{"text":"once"}', headers=h)
    first, again = qos2(False), qos2(True)
    assert first.status == again.status == 200 and first.body == again.body == b'{"status":"ok"}'
    assert "x-rainbow-replayed" not in first.headers
    assert again.headers["x-rainbow-replayed"] == "1"
    assert rb.db_query(dj.root / "dedup.db", "SELECT key FROM rainbow_replies") == [("djdev:9",)]
    assert site.log().count("bad signature") == 1, site.log()


def test_django_error_in_an_apps_rainbow_module_is_raised(dj):
    """The original imported each app's rainbow.py under a bare except, so a
    broken module just left its types without handlers. Here the start fails
    with the error."""
    site = dj(rb.free_port(), apps=["demo", "broken"], extra={
        "broken/__init__.py": "",
        "broken/rainbow.py": "import module_that_is_not_installed_anywhere\n"})
    with pytest.raises(AssertionError) as e:
        site.start(timeout=30)
    assert "module_that_is_not_installed_anywhere" in str(e.value), e.value
