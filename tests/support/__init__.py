"""Helpers for tests that are neither tests nor fixtures: the stable-error assertions
(errors), live processes (processes, live), what goes over the wire (wire), concurrency,
identity-provider stand-ins (identity), the fake Unkey (unkey_fake), the OpenAPI schema
(schema), headless Chromium (chromium), the README's blocks (readme), the staff admin
client (admin), the ops test URLconf (ops_urls) and the CI switch (ci).

Test data builders live in tests/factories; fixtures live in conftest.py files. Nothing
here imports a test module or a conftest (tests/test_test_house.py checks it).
"""
