"""Signals accounts sends for apps it may not import (DESIGN's import rules).

`user_status_changed(user=, status=)` is sent inside the transaction that changed a
customer user's status; apikeys listens to drop the cached auth context of the keys that
user created, after commit (apikeys/apps.py), so the change applies on the next request.
"""

from django.dispatch import Signal

user_status_changed = Signal()
