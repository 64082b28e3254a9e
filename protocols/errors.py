"""The one exception root of every codec in this package."""


class ProtocolError(ValueError):
    """Bad input to a codec. Each codec subclasses it; nothing else escapes a codec."""
