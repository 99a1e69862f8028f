"""Dashboard token verification for Clerk, Supabase Auth and the dev signer."""

from __future__ import annotations

import time

import jwt
import pytest
import requests
import responses

from accounts import jwks
from accounts.services import Identity
from accounts.signing import mint_dev_token
from accounts.tokens import verify_dashboard_token
from portal.errors import PortalError
from tests.support.identity import SUPABASE_SECRET, b64url, hs256_token, unsigned_token


def rejected(raw: str, code: str = "invalid_token") -> PortalError:
    with pytest.raises(PortalError) as caught:
        verify_dashboard_token(raw)
    assert caught.value.code == code
    return caught.value


# --- Both JWKS-backed providers ----------------------------------------------------


def test_valid_token_gives_the_identity(idp):
    identity = verify_dashboard_token(idp.token())

    assert identity.provider == idp.name
    assert identity.subject == idp.base_claims["sub"]
    assert identity.email == idp.base_claims["email"]
    assert identity.name in {"Clerk User", "Supa User"}


def test_expired_token(idp):
    rejected(idp.token(exp=int(time.time()) - 120), "token_expired")


def test_expiry_within_leeway_is_accepted(idp, settings):
    settings.JWT_LEEWAY_SECONDS = 30

    assert verify_dashboard_token(idp.token(exp=int(time.time()) - 5)).subject


def test_token_without_exp_is_rejected(idp):
    error = rejected(idp.token(exp=None))

    assert "exp" in error.message


def test_token_without_subject_is_rejected(idp):
    rejected(idp.token(sub=None))


def test_not_yet_valid_token(idp):
    error = rejected(idp.token(nbf=int(time.time()) + 120))

    assert "not valid yet" in error.message


def test_wrong_issuer(idp):
    error = rejected(idp.token(iss="https://evil.example.test"))

    assert "issuer" in error.message


def test_signature_by_an_unpublished_key_with_a_known_kid(idp, key_b):
    error = rejected(idp.token(signer=key_b, kid=idp.signer.kid))

    assert "signature" in error.message


def test_alg_none_is_rejected_without_fetching_keys(idp, jwks_server):
    header = {"alg": "none", "typ": "JWT", "kid": idp.signer.kid}

    rejected(unsigned_token(idp.claims(), header=header))

    assert jwks_server.calls(idp.jwks_url) == 0


def test_hs256_signed_with_the_public_key_pem_is_rejected(idp, key_a):
    # The classic key-confusion attack: the verifier's RSA public key used as an HMAC secret.
    forged = hs256_token(idp.claims(), secret=key_a.public_pem(), kid=key_a.kid)

    error = rejected(forged)

    assert "algorithm" in error.message


def test_malformed_token(idp):
    rejected("not-a-jwt")


def test_key_rotation_refetches_once_and_rate_limits_unknown_kids(
    idp, jwks_server, jwks_clock, key_a, key_b
):
    assert verify_dashboard_token(idp.token(signer=key_a)).subject
    assert jwks_server.calls(idp.jwks_url) == 1

    jwks_server.serve(idp.jwks_url, key_a, key_b)
    jwks_clock.advance(jwks.REFETCH_WINDOW_SECONDS + 1)
    assert verify_dashboard_token(idp.token(signer=key_b)).subject
    assert jwks_server.calls(idp.jwks_url) == 2

    for _ in range(5):
        error = rejected(idp.token(signer=key_b, kid="made-up-kid"))
    assert "No signing key" in error.message
    assert jwks_server.calls(idp.jwks_url) == 2

    jwks_clock.advance(jwks.REFETCH_WINDOW_SECONDS + 1)
    rejected(idp.token(signer=key_b, kid="another-made-up-kid"))
    rejected(idp.token(signer=key_b, kid="third-made-up-kid"))
    assert jwks_server.calls(idp.jwks_url) == 3


def test_keys_are_cached_until_the_ttl(idp, jwks_server, jwks_clock, settings):
    settings.JWKS_CACHE_SECONDS = 600
    verify_dashboard_token(idp.token())
    jwks_clock.advance(599)
    verify_dashboard_token(idp.token())
    assert jwks_server.calls(idp.jwks_url) == 1

    jwks_clock.advance(2)
    verify_dashboard_token(idp.token())

    assert jwks_server.calls(idp.jwks_url) == 2


def test_jwks_endpoint_down(idp, jwks_server):
    jwks_server.fail(idp.jwks_url, status=503)

    error = rejected(idp.token())

    assert error.message == "Could not fetch signing keys."


def test_jwks_connection_error(idp, jwks_server):
    jwks_server.mock.upsert(responses.GET, idp.jwks_url, body=requests.ConnectionError("refused"))

    error = rejected(idp.token())

    assert error.message == "Could not fetch signing keys."
    assert "refused" not in error.message


def test_stale_keys_are_kept_while_the_endpoint_is_down(idp, jwks_server, jwks_clock, settings):
    settings.JWKS_CACHE_SECONDS = 600
    verify_dashboard_token(idp.token())
    jwks_server.fail(idp.jwks_url)
    jwks_clock.advance(601)

    assert verify_dashboard_token(idp.token()).subject
    assert jwks_server.calls(idp.jwks_url) == 2


def test_symmetric_keys_in_a_jwks_are_ignored(idp, jwks_server):
    secret = b"an-hmac-key-published-in-the-jwks!!"
    oct_key = {"kty": "oct", "kid": "oct-key", "alg": "HS256", "k": b64url(secret)}
    jwks_server.mock.upsert(responses.GET, idp.jwks_url, json={"keys": [oct_key]})

    rejected(hs256_token(idp.claims(), secret=secret, kid="oct-key"))


# --- Clerk ---------------------------------------------------------------------------


def test_clerk_rejects_an_unauthorized_party(clerk):
    error = rejected(clerk.token(azp="https://evil.example.test"))

    assert "unauthorized party" in error.message


def test_clerk_rejects_a_missing_azp_when_parties_are_configured(clerk):
    rejected(clerk.token(azp=None))


def test_clerk_accepts_any_azp_when_no_parties_are_configured(clerk, settings):
    settings.CLERK_AUTHORIZED_PARTIES = []

    assert verify_dashboard_token(clerk.token(azp="https://elsewhere.example.test")).subject


def test_clerk_ignores_aud(clerk):
    assert verify_dashboard_token(clerk.token(aud="some-template-audience")).subject


def test_clerk_without_profile_claims(clerk):
    identity = verify_dashboard_token(clerk.token(email=None, name=None))

    assert (identity.email, identity.name) == ("", "")


def test_clerk_does_not_accept_es256(clerk, jwks_server, ec_key):
    jwks_server.serve(clerk.jwks_url, clerk.signer, ec_key)

    rejected(clerk.token(signer=ec_key))


def test_clerk_rejects_a_kid_less_token_against_many_keys(clerk, jwks_server, key_b):
    jwks_server.serve(clerk.jwks_url, clerk.signer, key_b)
    kidless = jwt.encode(clerk.claims(), clerk.signer.private_key, algorithm="RS256")

    rejected(kidless)


# --- Supabase -------------------------------------------------------------------------


def test_supabase_wrong_audience(supabase):
    error = rejected(supabase.token(aud="anon"))

    assert "audience" in error.message


def test_supabase_missing_audience(supabase):
    rejected(supabase.token(aud=None))


def test_supabase_es256_from_the_jwks(supabase, ec_key):
    assert verify_dashboard_token(supabase.token(signer=ec_key)).provider == "supabase"


def test_supabase_name_falls_back_to_metadata_name(supabase):
    identity = verify_dashboard_token(supabase.token(user_metadata={"name": "Short Name"}))

    assert identity.name == "Short Name"


def test_supabase_oversized_metadata_name_is_clipped(supabase):
    identity = verify_dashboard_token(supabase.token(user_metadata={"full_name": "x" * 5000}))

    assert len(identity.name) == 200


def test_supabase_hs256_with_the_project_secret(supabase, settings, jwks_server):
    settings.SUPABASE_JWT_SECRET = SUPABASE_SECRET

    identity = verify_dashboard_token(
        hs256_token(supabase.claims(), secret=SUPABASE_SECRET.encode())
    )

    assert identity.subject == supabase.base_claims["sub"]
    assert jwks_server.calls(supabase.jwks_url) == 0


def test_supabase_hs256_with_a_wrong_secret(supabase, settings):
    settings.SUPABASE_JWT_SECRET = SUPABASE_SECRET

    error = rejected(hs256_token(supabase.claims(), secret=b"some-other-secret-of-enough-length!!"))

    assert "signature" in error.message


def test_supabase_hs256_signed_with_the_public_key_pem_fails_even_with_a_secret(
    supabase, settings, key_a
):
    settings.SUPABASE_JWT_SECRET = SUPABASE_SECRET

    rejected(hs256_token(supabase.claims(), secret=key_a.public_pem(), kid=key_a.kid))


def test_supabase_hs256_still_checks_audience_and_expiry(supabase, settings):
    settings.SUPABASE_JWT_SECRET = SUPABASE_SECRET
    secret = SUPABASE_SECRET.encode()

    rejected(hs256_token(supabase.claims(aud="anon"), secret=secret))
    rejected(
        hs256_token(supabase.claims(exp=int(time.time()) - 120), secret=secret), "token_expired"
    )


def test_supabase_asymmetric_tokens_still_work_with_a_secret_set(supabase, settings):
    settings.SUPABASE_JWT_SECRET = SUPABASE_SECRET

    assert verify_dashboard_token(supabase.token()).subject


# --- Dev signer ------------------------------------------------------------------------


@pytest.fixture
def dev(settings):
    settings.AUTH_PROVIDER = "dev"
    settings.DEV_AUTH_SECRET = "dev-auth-secret-for-tests-32-bytes-long"


def test_dev_token_round_trip(dev):
    raw = mint_dev_token(subject="dev|ann@example.com", email="ann@example.com", name="Ann")

    assert verify_dashboard_token(raw) == Identity(
        provider="dev", subject="dev|ann@example.com", email="ann@example.com", name="Ann"
    )


def test_dev_token_with_another_secret_is_rejected(dev, settings):
    raw = mint_dev_token(subject="dev|ann@example.com")
    settings.DEV_AUTH_SECRET = "a-different-dev-secret-32-bytes-long!"

    rejected(raw)


def test_dev_token_expired(dev):
    rejected(mint_dev_token(subject="s", ttl_seconds=-120), "token_expired")


def test_dev_alg_none_is_rejected(dev):
    rejected(
        unsigned_token(
            {"iss": "portal-dev", "aud": "portal", "sub": "s", "exp": int(time.time()) + 60}
        )
    )


def test_dev_tokens_are_refused_by_clerk(clerk):
    rejected(mint_dev_token(subject="dev|ann@example.com"))


def test_unknown_provider_is_refused(settings):
    settings.AUTH_PROVIDER = "okta"

    rejected("a.b.c")


def test_a_non_string_kid_is_malformed(clerk):
    forged = unsigned_token(clerk.claims(), header={"alg": "RS256", "kid": ["key-a"]})

    error = rejected(forged)

    assert error.message == "The token is malformed."
