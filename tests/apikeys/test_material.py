"""Key material: the secret's shape and randomness, its stored HMAC, its display parts."""

from __future__ import annotations

import hashlib
import hmac
import string

from apikeys import material

BASE62 = set(string.digits + string.ascii_letters)
BODY_LENGTH = 43  # 62**43 > 2**256: room for 32 random bytes


def body_of(secret: str) -> str:
    return secret[len("ctr_live_") :]


def test_generated_key_is_live_prefix_and_43_base62_characters():
    secret = material.generate_secret()

    assert secret.startswith("ctr_live_")
    assert len(body_of(secret)) == BODY_LENGTH
    assert set(body_of(secret)) <= BASE62


def test_generated_keys_are_unique_across_many_draws():
    secrets = [material.generate_secret() for _ in range(5_000)]

    assert len(set(secrets)) == len(secrets)


def test_every_character_of_the_body_is_random():
    """No position is padding or constant: randomness is spread over all 43 characters."""
    bodies = [body_of(material.generate_secret()) for _ in range(500)]

    for position in range(BODY_LENGTH):
        seen = {body[position] for body in bodies}
        assert len(seen) > 20, f"position {position} only ever holds {sorted(seen)}"
    assert set("".join(bodies)) == BASE62


def test_generated_keys_look_like_keys():
    assert all(material.looks_like_key(material.generate_secret()) for _ in range(100))


def test_malformed_strings_do_not_look_like_keys():
    secret = material.generate_secret()

    assert not material.looks_like_key("sk-" + body_of(secret))
    assert not material.looks_like_key("ctr_test_" + body_of(secret))
    assert not material.looks_like_key(secret[:-1])
    assert not material.looks_like_key(secret + "A")
    assert not material.looks_like_key(secret[:-1] + "_")
    assert not material.looks_like_key("")


def test_hash_is_hmac_sha256_of_the_key_under_the_pepper(settings):
    settings.API_KEY_PEPPER = "pepper-one"
    secret = material.generate_secret()

    expected = hmac.new(b"pepper-one", secret.encode(), hashlib.sha256).hexdigest()
    assert material.hash_secret(secret) == expected
    assert len(material.hash_secret(secret)) == 64


def test_hash_is_not_a_plain_sha256(settings):
    secret = material.generate_secret()

    assert material.hash_secret(secret) != hashlib.sha256(secret.encode()).hexdigest()


def test_changing_the_pepper_changes_the_hash(settings):
    secret = material.generate_secret()
    settings.API_KEY_PEPPER = "pepper-one"
    first = material.hash_secret(secret)

    settings.API_KEY_PEPPER = "pepper-two"

    assert material.hash_secret(secret) != first


def test_hash_is_stable_for_one_key_and_differs_between_keys():
    secret, other = material.generate_secret(), material.generate_secret()

    assert material.hash_secret(secret) == material.hash_secret(secret)
    assert material.hash_secret(secret) != material.hash_secret(other)


def test_display_parts_are_the_prefix_with_four_characters_and_the_last_four():
    secret = "ctr_live_" + "AbCd" + "x" * 35 + "WxYz"

    prefix, last_four = material.display_parts(secret)

    assert prefix == "ctr_live_AbCd"
    assert last_four == "WxYz"


def test_display_parts_reveal_only_eight_characters_of_the_body():
    secret = material.generate_secret()

    prefix, last_four = material.display_parts(secret)

    assert secret.startswith(prefix) and secret.endswith(last_four)
    assert len(prefix) - len("ctr_live_") + len(last_four) == 8
