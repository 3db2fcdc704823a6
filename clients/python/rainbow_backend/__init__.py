"""rainbow_backend: the application-backend side of the Rainbow gateway,
standard library only (docs/protocol.md, docs/rest-api.md).

    signing    v1 / v2 signatures with the timestamp window
    messages   RainbowRequest, RainbowResponse (cookie context, channels,
               reply, refusal)
    app        Backend: handlers for the connect hook, forwards and the
               close hook; WSGI app and a small HTTP server
    store      exactly-once QoS 2 replies (MemoryStore, SQLiteStore)
    rest       RestClient for /send/, /sub/, /unsub/, /kick/, /presence/,
               /channels/
    tokens     connection tokens (HS256 JWT) for token_secret

See clients/python/README.md.
"""
from .app import Backend, serve_wsgi
from .messages import (InvalidRequest, RainbowRequest, RainbowResponse, decode_context,
                       encode_context)
from .rest import RestClient, RestError
from .signing import (NonceCache, SignatureError, canonical_query, check_v1, check_v2,
                      sign_v1, sign_v2, signed_query_v1, signed_query_v2, verify_v1,
                      verify_v2)
from .store import MemoryStore, SQLiteStore
from .tokens import TokenError, mint_token, verify_token

__version__ = "1.0"
__all__ = [
    "Backend", "serve_wsgi", "InvalidRequest", "RainbowRequest", "RainbowResponse",
    "decode_context", "encode_context", "RestClient", "RestError", "NonceCache",
    "SignatureError", "canonical_query", "check_v1", "check_v2", "sign_v1", "sign_v2",
    "signed_query_v1", "signed_query_v2", "verify_v1", "verify_v2", "MemoryStore",
    "SQLiteStore", "TokenError", "mint_token", "verify_token",
]
