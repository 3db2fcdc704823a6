"""The three views the gateway calls (urls.py): connect, close, on_message.
Each hands the request to rainbow_backend.Backend.dispatch and turns its
(status, headers, body) into an HttpResponse."""
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

from rainbow_django import get_backend


def _headers(request):
    # WSGI gives header values as latin-1 text: recover UTF-8
    out = []
    for k, v in request.headers.items():
        try:
            v = v.encode("latin-1").decode("utf-8")
        except (UnicodeEncodeError, UnicodeDecodeError):
            pass
        out.append((k, v))
    return out


def _answer(result):
    status, headers, body = result
    rsp = HttpResponse(body, status=status)
    for k, v in headers:
        try:
            v.encode("latin-1")
        except UnicodeEncodeError:
            v = v.encode("utf-8").decode("latin-1")
        rsp[k] = v
    return rsp


def _call(request, kind, msg_type=None):
    return _answer(get_backend().dispatch(kind, msg_type, request.method, request.path,
                                          request.GET.items(), _headers(request),
                                          request.body, http=request))


@csrf_exempt
def connect(request):
    """The connect hook (GET <connect_url>)."""
    return _call(request, "connect")


@csrf_exempt
def close(request):
    """The close hook (GET <close_url>)."""
    return _call(request, "close")


@csrf_exempt
def on_message(request, msg_type):
    """A forward (POST <forward_url><type>/)."""
    if request.method != "POST":
        return HttpResponse(b'{"status":1,"msg":"a forward is a POST"}', status=405,
                            content_type="application/json")
    return _call(request, "message", int(msg_type))
