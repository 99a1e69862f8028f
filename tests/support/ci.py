"""CI=true: missing services and tools fail tests instead of skipping them."""

from __future__ import annotations

import os

IN_CI = os.environ.get("CI", "").lower() == "true"
