"""Emergency roll call: each recipient of an emergency answers "I'm safe" or "I need
help" (with an optional short text), from any tab; the latest answer counts. An answer
also counts as reading the alert."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from ..db import utcnow
from ..models import Answer, Delivery, Notification, Priority


def record_answer(
    session: Session,
    user_id: int,
    notification_id: int,
    answer: Answer,
    text: str | None,
    now: datetime | None = None,
) -> bool:
    """Keep this recipient's answer to an emergency that is not over yet, and commit;
    False (nothing written) when they got no such emergency."""
    emergency = (
        select(Notification.id)
        .where(
            Notification.id == notification_id,
            Notification.priority == Priority.EMERGENCY,
            Notification.retracted_at.is_(None),
            Notification.all_clear_at.is_(None),
        )
        .scalar_subquery()
    )
    result = session.execute(
        update(Delivery)
        .where(
            Delivery.user_id == user_id,
            Delivery.notification_id == notification_id,
            Delivery.notification_id == emergency,
        )
        .values(answer=answer, answer_text=text, answered_at=now or utcnow())
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return bool(result.rowcount)
