"""Web Push: VAPID keys, subscriptions, and sending one push (the job)."""

from __future__ import annotations
