"""Services: the rules of Schoolbell. Each takes a Session and owns its transaction."""


def load_job_handlers() -> None:
    """Import the modules whose job handlers the runner needs (they register on import)."""
    from . import expiry, mail, push, reach, reminders, retention, scheduled
