"""Request and response bodies: a ``*Create`` model for input, a ``*Public`` model for output."""
