"""Services: the rules of Schoolbell. Each takes a Session and owns its transaction."""
