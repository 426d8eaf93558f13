"""Signed links from e-mails: open an announcement (records `read`) or confirm it
(records `acknowledged`), without signing in.

A link is single-use: using it stores its nonce (`used_links`) in the same transaction
as its receipt and its audit event, so a failure leaves it unused, and a second use is
refused. Looking at a link (`peek`) uses nothing: mail scanners fetch the links in an
e-mail before people click them, so confirming takes a POST from the page.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased

from .. import errors, tokens
from ..db import utcnow
from ..models import Channel, Delivery, DeliveryState, Notification, UsedLink, User
from . import audit, receipts

# What using each kind of link records, and how it is audited.
STATES = {"open": DeliveryState.READ, "confirm": DeliveryState.ACKNOWLEDGED}
AUDIT_ACTIONS = {"open": "link.opened", "confirm": "link.confirmed"}


@dataclass(frozen=True)
class LinkPage:
    """What a link's page shows: the announcement, the recipient's delivery of it (as
    it was before this use), and the author's name."""

    notification: Notification
    delivery: Delivery
    author: str | None


def read_claims(secret: str, purpose: str, token: str, *, max_age_s: int) -> tokens.LinkClaims:
    """The claims of a link's token, or its error: invalid_link_token, link_expired."""
    try:
        return tokens.verify_link(secret, purpose, token, max_age_s)
    except tokens.LinkExpired:
        raise errors.LINK_EXPIRED.error() from None
    except tokens.InvalidLink:
        raise errors.INVALID_LINK_TOKEN.error() from None


def _page(session: Session, claims: tokens.LinkClaims) -> LinkPage:
    """The announcement a link names, if its recipient is still active and it is still
    live; otherwise its error."""
    author = aliased(User)
    row = session.execute(
        select(Notification, Delivery, author.name)
        .join(Delivery, Delivery.notification_id == Notification.id)
        .join(User, User.id == Delivery.user_id)
        .outerjoin(author, author.id == Notification.author_id)
        .where(
            Delivery.user_id == claims.user_id,
            Notification.id == claims.notification_id,
            User.active.is_(True),
        )
    ).first()
    if row is None:
        raise errors.NOTIFICATION_NOT_FOUND.error(id=claims.notification_id)
    notification, delivery, author_name = row
    if notification.retracted_at is not None:
        raise errors.NOTIFICATION_WITHDRAWN.error()
    if notification.expires_at is not None and notification.expires_at <= utcnow():
        raise errors.NOTIFICATION_EXPIRED.error()
    return LinkPage(notification, delivery, author_name)


def peek(session: Session, purpose: str, claims: tokens.LinkClaims) -> LinkPage:
    """A link's page, without using the link (it may have been used: link_used)."""
    page = _page(session, claims)
    used = session.get(UsedLink, claims.nonce) is not None
    # End the read: on SQLite the transaction holds the write lock (BEGIN IMMEDIATE).
    session.commit()
    if used:
        raise errors.LINK_USED.error()
    return page


def use_link(
    session: Session, purpose: str, claims: tokens.LinkClaims, *, address: str | None = None
) -> tuple[LinkPage, receipts.Receipt]:
    """Use a link once: record its receipt (through the e-mail channel) and an audit
    event, and commit. A link used before is link_used, and records nothing."""
    try:
        page = _page(session, claims)
        session.add(UsedLink(nonce=claims.nonce, purpose=purpose, used_at=utcnow()))
        session.flush()
    except IntegrityError:  # the nonce is there: used before (or at this very moment)
        session.rollback()
        raise errors.LINK_USED.error() from None
    except errors.DomainError:
        session.rollback()
        raise
    audit.record(
        session,
        AUDIT_ACTIONS[purpose],
        actor=session.get(User, claims.user_id),
        subject=f"notification:{claims.notification_id}",
        address=address,
    )
    try:
        receipt = receipts.record_one(  # commits the nonce and the audit event with it
            session, claims.user_id, claims.notification_id, STATES[purpose], Channel.EMAIL
        )
    except BaseException:
        session.rollback()
        raise
    return page, receipt
