"""Connection tokens: the vectors shared with tests/unit/test_token.c, and
tokens minted here verify under the same rules."""
import json
from pathlib import Path

import pytest

from rainbow_backend import TokenError, mint_token, verify_token

VECTORS = Path(__file__).resolve().parents[3] / "tests" / "fixtures" / "token_vectors.json"


def vectors():
    if not VECTORS.exists():
        pytest.skip("%s is not there" % VECTORS)
    return json.loads(VECTORS.read_text())["vectors"]


def test_token_vectors():
    for v in vectors():
        if v["ok"]:
            claims = verify_token(v["token"], v["secret"], now=v["now"], leeway=v["leeway"])
            assert claims["sub"] == v["sub"], v["name"]
            assert claims["exp"] == v["exp"], v["name"]
            assert claims.get("info") == v["info"], v["name"]
            assert claims.get("channels", []) == v["channels"], v["name"]
        else:
            with pytest.raises(TokenError) as e:
                verify_token(v["token"], v["secret"], now=v["now"], leeway=v["leeway"])
            assert str(e.value) == v["why"], v["name"]


def test_mint_then_verify():
    t = mint_token("s3cret", "user-1", expires_in=60, info={"name": "Zoë"},
                   channels=["room", "news"], now=1700000000)
    assert t.startswith("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.")
    c = verify_token(t, "s3cret", now=1700000030)
    assert c == {"sub": "user-1", "exp": 1700000060, "info": {"name": "Zoë"},
                 "channels": ["room", "news"]}
    with pytest.raises(TokenError, match="token expired"):
        verify_token(t, "s3cret", now=1700000066)
    with pytest.raises(TokenError, match="bad token signature"):
        verify_token(t, "other", now=1700000030)
    with pytest.raises(ValueError):
        mint_token("s", "", now=1)
    with pytest.raises(ValueError):
        mint_token("s", "u", channels=["a", ""])


def test_minted_like_the_gateway_would():
    """The first vector's claims minted here give the same token (same
    header, compact JSON in the same key order)."""
    v = vectors()[0]
    t = mint_token(v["secret"], v["sub"], exp=v["exp"], info=v["info"], channels=v["channels"])
    assert t == v["token"]
