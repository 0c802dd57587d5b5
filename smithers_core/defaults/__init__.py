"""Core's own default behaviour, registered as ordinary plugins (names ``core.*``)."""
