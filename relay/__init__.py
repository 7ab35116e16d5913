"""relay: a durable bridge from an applicant-tracking system to Sense."""

__version__ = "0.1.0"
