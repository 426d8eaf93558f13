"""Client JWTs: webapp.tokens verifies only HS256 tokens we signed, with every claim.

`cryptography` is not installed, so PyJWT cannot sign RS256 here. The HS/RS confusion
attack is crafted by hand instead: a token whose header says RS256, and a token signed
HS256 with an RSA *public key PEM* as the HMAC secret (what an attacker does when a
verifier would use its public key as an HMAC key). Both must be refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from webapp import tokens
from webapp.db import get_session
from webapp.services import api_tokens
from webapp.services import users as users_service

from .conftest import TEST_SECRETS

SECRET = TEST_SECRETS["JWT_SECRET"]
ISSUER, AUDIENCE = "schoolbell", "schoolbell-client"
# A generated RSA public key: public by nature, and all an attacker would know.
PUBLIC_KEY_PEM = """-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAsRAr3JzxFrzWXTyIxavO
4PHsHmvyzgJhp69ku03gpsneZr7jPRmHcLYgXYN5hSoapyXNWXT3Gm9KXE0rmv2C
f10dKeA14NObnevuf8jhMpqUj3F3Af9VGWheiHNlHXY4R/jFkdtqTVuUhjCu9lSH
8vJ5473ZcV6twxqU0YECQWgWPZK1HDSbE/k0Ym4yTwYp1V/UrjM5CGxEtUFD8fEH
BTLpB6wor4G/vklAPkpbNbe41UCVHgefdocHGw+IpqbDKd5d+H/34B5PJl1ilWys
qIiabO1ntSGfI6JdmbN2RflX8mizuM5UvthkaV6OVdBsyhkBS5cwDugJh8fn29zO
twIDAQAB
-----END PUBLIC KEY-----
"""


def verify(token):
    """Verify with the test app's settings."""
    return tokens.verify_client_token(token, secret=SECRET, issuer=ISSUER, audience=AUDIENCE)


def claims(**changes) -> dict:
    """Valid claims for user 42; a change to None drops that claim."""
    now = int(time.time())
    base = {"sub": "42", "iat": now, "nbf": now, "exp": now + 300, "iss": ISSUER, "aud": AUDIENCE}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def craft(header: dict, payload: dict, key: bytes | None, digest=hashlib.sha256) -> str:
    """Build a JWT by hand; an HMAC signature with `key`, or none at all."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if key is None:
        return signing_input + "."
    signature = hmac.new(key, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


def refused(token) -> str:
    """Assert the token is refused; return the reason, which never contains the token."""
    with pytest.raises(tokens.InvalidToken) as caught:
        verify(token)
    reason = str(caught.value)
    if isinstance(token, str) and token.strip():
        assert token not in reason
    return reason


def test_issued_token_verifies_and_names_the_user():
    issued = tokens.issue_client_token(
        42, secret=SECRET, issuer=ISSUER, audience=AUDIENCE, ttl_s=60
    )
    assert verify(issued.token) == 42
    assert 55 <= issued.expires_at.timestamp() - time.time() <= 61


def test_hand_crafted_good_token_is_accepted():
    """The crafting helper itself makes valid tokens, so the refusals below mean something."""
    assert verify(craft({"alg": "HS256", "typ": "JWT"}, claims(), SECRET.encode())) == 42


@pytest.mark.parametrize("token", [None, "", "   ", "not-a-jwt", "a.b", "a.b.c", "..."])
def test_missing_or_malformed_token_is_refused(token):
    refused(token)


def test_token_signed_with_another_secret_is_refused():
    assert (
        refused(jwt.encode(claims(), "another-secret-" + "x" * 32, algorithm="HS256"))
        == "invalid token"
    )


def test_tampered_payload_is_refused():
    header, _payload, signature = jwt.encode(claims(), SECRET, algorithm="HS256").split(".")
    forged = b64url(json.dumps(claims(sub="1")).encode())
    refused(f"{header}.{forged}.{signature}")


@pytest.mark.parametrize("alg", ["none", "None", "NONE"])
def test_unsigned_alg_none_token_is_refused(alg):
    refused(craft({"alg": alg, "typ": "JWT"}, claims(), key=None))
    refused(craft({"alg": alg, "typ": "JWT"}, claims(), key=None).rstrip("."))


def test_rs256_header_is_refused():
    """Only HS256 is accepted, whatever the header claims and whatever signs it."""
    refused(craft({"alg": "RS256", "typ": "JWT"}, claims(), PUBLIC_KEY_PEM.encode()))
    refused(craft({"alg": "RS256", "typ": "JWT"}, claims(), SECRET.encode()))


def test_hs256_signed_with_a_public_key_as_secret_is_refused():
    refused(craft({"alg": "HS256", "typ": "JWT"}, claims(), PUBLIC_KEY_PEM.encode()))


def test_other_hmac_algorithm_is_refused_even_with_our_secret():
    refused(craft({"alg": "HS512", "typ": "JWT"}, claims(), SECRET.encode(), hashlib.sha512))


def test_expired_token_is_refused():
    now = int(time.time())
    assert (
        refused(
            jwt.encode(
                claims(iat=now - 600, nbf=now - 600, exp=now - 60), SECRET, algorithm="HS256"
            )
        )
        == "token expired"
    )


@pytest.mark.parametrize("claim", ["nbf", "iat"])
def test_token_from_the_future_is_refused(claim):
    future = int(time.time()) + 600
    token = jwt.encode(claims(**{claim: future}, exp=future + 300), SECRET, algorithm="HS256")
    assert refused(token) == "token not yet valid"


@pytest.mark.parametrize("audience", ["someone-else", ["someone-else"], ""])
def test_wrong_audience_is_refused(audience):
    refused(jwt.encode(claims(aud=audience), SECRET, algorithm="HS256"))


def test_wrong_issuer_is_refused():
    assert (
        refused(jwt.encode(claims(iss="evil"), SECRET, algorithm="HS256")) == "wrong token issuer"
    )


@pytest.mark.parametrize("claim", tokens.REQUIRED_CLAIMS)
def test_token_missing_a_required_claim_is_refused(claim):
    token = jwt.encode(claims(**{claim: None}), SECRET, algorithm="HS256")
    assert claim in refused(token)


@pytest.mark.parametrize("subject", ["abc", 42, ""])
def test_subject_that_is_not_a_user_id_is_refused(subject):
    refused(jwt.encode(claims(sub=subject), SECRET, algorithm="HS256"))


def test_token_from_the_api_verifies(app, client, make_user):
    owner = make_user("admin", email="owner@school.test")
    ann = make_user("student", email="ann@school.test")
    with app.app_context():
        session = get_session()
        _token, secret = api_tokens.create(session, "sis", users_service.get(session, owner.id))
    r = client.post(
        "/api/v1/tokens",
        json={"email": "ann@school.test"},
        headers={"Authorization": f"Bearer {secret}"},
    )
    assert r.status_code == 201
    issued = r.get_json()
    user_id = tokens.verify_client_token(
        issued["token"],
        secret=app.config["JWT_SECRET"],
        issuer=app.config["JWT_ISSUER"],
        audience=app.config["JWT_AUDIENCE"],
    )
    assert user_id == ann.id
    exp = jwt.decode(issued["token"], options={"verify_signature": False})["exp"]
    assert issued["expires_at"].startswith(time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(exp)))
