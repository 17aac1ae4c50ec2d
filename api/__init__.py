"""The HTTP service for treatment consoles and the therapist review page."""
