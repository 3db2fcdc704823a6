"""include("rainbow_django.urls") under a prefix, e.g. path("rainbow/", ...):
connect_url = .../rainbow/connect/, close_url = .../rainbow/close/,
forward_url = .../rainbow/message/{message_type}/ (or .../rainbow/message/)."""
from django.urls import re_path

from rainbow_django import views

urlpatterns = [
    re_path(r"^connect/?$", views.connect, name="rainbow-connect"),
    re_path(r"^close/?$", views.close, name="rainbow-close"),
    re_path(r"^message/(?P<msg_type>\d+)/?$", views.on_message, name="rainbow-message"),
]
