"""Credits and manual adjustments that staff post (the admin's form, `manage.py post_adjustment`).

The rules, in one place for both:

- amounts are integer micro-USD. A credit is given as the (positive) amount the
  organization gets back and booked negative; an adjustment is signed (positive
  charges, negative refunds). Zero is refused.
- the reason is required: it is the entry's memo, which the organization reads in
  `/ledger`, and the audit row's reason.
- every posting is idempotent. Keys are per organization (`manual:<org>:<key>`), so no
  caller's key can collide with the ledger's own `usage:` keys. Without a key, one is
  derived from the org, kind, amount, reason and UTC day: an accidental second run the
  same day posts nothing, while a deliberate repeat needs its own key. A key already
  used for a different kind or amount is refused, not silently ignored.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction

from accounts.models import Organization
from accounts.services import audit_record
from metering.ledger import lock_periods, require_int
from metering.models import LedgerEntry
from metering.periods import billing_period_for
from metering.pricing import usd

KINDS = (LedgerEntry.Kind.CREDIT.value, LedgerEntry.Kind.ADJUSTMENT.value)
# Beyond this a typo (an extra zero or three) is likelier than a real posting: 1 million USD.
MAX_AMOUNT = 1_000_000 * 1_000_000
MAX_REASON = LedgerEntry._meta.get_field("memo").max_length
MAX_KEY = 100
_KEY = re.compile(r"[A-Za-z0-9._:@/-]+")


class AdjustmentError(ValueError):
    """Input that posts nothing; the message says what to fix (shown to staff as is)."""

    def __init__(self, message: str, *, field: str | None = None, code: str = "invalid"):
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code  # "key_conflict": the key was used for another posting


@dataclass(frozen=True)
class Posted:
    entry: LedgerEntry
    created: bool

    def describe(self) -> str:
        entry = self.entry
        what = f"{entry.kind} of {usd(entry.amount)} USD ({entry.amount} micro-USD)"
        where = f"entry #{entry.pk}, billing period #{entry.billing_period_id}"
        if self.created:
            return f"Posted a {what} to {entry.org}: {where}."
        return f"Already posted ({where}): a {what}; nothing posted again."


def ledger_post_manual(
    *,
    org: Organization,
    kind: str,
    amount: int,
    idempotency_key: str,
    memo: str,
    actor: object,
    now: datetime,
    source: str = "manual",
    audit_extra: dict | None = None,
) -> tuple[LedgerEntry, bool]:
    """A credit (negative) or a manual adjustment, booked in the period holding `now`; audited.

    Returns (entry, created): the same idempotency key again returns the first entry.
    The primitive: `adjustment_post` checks staff input first.
    """
    require_int(amount, "amount")
    if kind not in (LedgerEntry.Kind.CREDIT, LedgerEntry.Kind.ADJUSTMENT):
        raise ValueError(f"kind must be credit or adjustment, not {kind!r}")
    if kind == LedgerEntry.Kind.CREDIT and amount >= 0:
        raise ValueError("a credit is a negative amount")
    existing = LedgerEntry.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, False
    try:
        with transaction.atomic():
            period = billing_period_for(org_id=org.pk, at=now, now=now)
            entry = LedgerEntry.objects.create(
                org=org,
                billing_period=lock_periods([period.pk])[period.pk],
                kind=kind,
                amount=amount,
                idempotency_key=idempotency_key,
                source=source,
                memo=memo,
                created_at=now,
            )
            audit_record(
                actor=actor,
                action=f"ledger.{kind}",
                target_type="ledger_entry",
                target_id=entry.pk,
                org=org,
                reason=memo,
                after={
                    "kind": kind,
                    "amount": amount,
                    "billing_period": entry.billing_period_id,
                    "idempotency_key": idempotency_key,
                    "source": source,
                    **(audit_extra or {}),
                },
                now=now,
            )
            return entry, True
    except IntegrityError:
        return LedgerEntry.objects.get(idempotency_key=idempotency_key), False


def find_org(value: str) -> Organization:
    """An organization by id or slug."""
    value = (value or "").strip()
    try:
        org = Organization.objects.filter(pk=uuid.UUID(value)).first()
    except ValueError:
        org = Organization.objects.filter(slug=value).first() if value else None
    if org is None:
        raise AdjustmentError(f"no organization with id or slug {value!r}", field="org")
    return org


def parse_amount(value: object) -> int:
    """An integer number of micro-USD from text or an int; floats and decimals are refused."""
    if type(value) is int:
        return value
    text = str(value).strip().replace("_", "")
    if not re.fullmatch(r"[+-]?\d+", text):
        raise AdjustmentError(
            f"amount must be a whole number of micro-USD (1 USD = 1000000), not {value!r}",
            field="amount",
        )
    return int(text)


def signed_amount(*, kind: str, amount: int) -> int:
    """The ledger amount: a credit's positive size booked negative, an adjustment as given."""
    if kind not in KINDS:
        raise AdjustmentError(f"kind must be credit or adjustment, not {kind!r}", field="kind")
    if type(amount) is not int:
        raise AdjustmentError("amount must be an integer number of micro-USD", field="amount")
    if amount == 0:
        raise AdjustmentError("amount must not be zero", field="amount")
    if abs(amount) > MAX_AMOUNT:
        raise AdjustmentError(
            f"amount is over {MAX_AMOUNT} micro-USD ({usd(MAX_AMOUNT)} USD): check the zeros",
            field="amount",
        )
    if kind == LedgerEntry.Kind.CREDIT:
        if amount < 0:
            raise AdjustmentError(
                "a credit's amount is what the organization gets back: give it as a positive "
                "number (it is booked negative); use kind adjustment for a signed correction",
                field="amount",
            )
        return -amount
    return amount


def _clean_reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise AdjustmentError(
            "a reason is required (the organization sees it in its ledger)", field="reason"
        )
    if len(reason) > MAX_REASON:
        raise AdjustmentError(f"the reason is at most {MAX_REASON} characters", field="reason")
    return reason


def ledger_key(
    *, org: Organization, kind: str, amount: int, reason: str, key: str | None, now: datetime
) -> str:
    """The entry's idempotency key: the caller's, or one derived so a same-day rerun is a no-op."""
    if key is None or not key.strip():
        digest = hashlib.sha256(reason.encode()).hexdigest()[:16]
        key = f"auto:{kind}:{amount}:{now:%Y-%m-%d}:{digest}"
    else:
        key = key.strip()
        if len(key) > MAX_KEY or not _KEY.fullmatch(key):
            raise AdjustmentError(
                f"the idempotency key is at most {MAX_KEY} characters of letters, digits and ._:@/-",
                field="idempotency_key",
            )
    return f"manual:{org.pk}:{key}"


def adjustment_post(
    *,
    org: Organization,
    kind: str,
    amount: int,
    reason: str,
    actor: object,
    now: datetime,
    idempotency_key: str | None = None,
    source: str = "manual",
    audit_extra: dict | None = None,
) -> Posted:
    """Post a credit or adjustment into the org's billing period holding `now`, audited, once per key.

    Raises AdjustmentError (nothing posted) for bad input or a key reused for another posting.
    """
    reason = _clean_reason(reason)
    signed = signed_amount(kind=kind, amount=amount)
    key = ledger_key(org=org, kind=kind, amount=amount, reason=reason, key=idempotency_key, now=now)
    entry, created = ledger_post_manual(
        org=org,
        kind=kind,
        amount=signed,
        idempotency_key=key,
        memo=reason,
        actor=actor,
        now=now,
        source=source,
        audit_extra=audit_extra,
    )
    if not created and (entry.org_id, entry.kind, entry.amount) != (org.pk, kind, signed):
        raise AdjustmentError(
            f"the idempotency key was already used for entry #{entry.pk} "
            f"(a {entry.kind} of {entry.amount} micro-USD); use a new key for a different posting",
            field="idempotency_key",
            code="key_conflict",
        )
    return Posted(entry=entry, created=created)
