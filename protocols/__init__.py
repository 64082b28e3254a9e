"""Pure, I/O-free codecs (sans-I/O): bytes or strings in, typed values out.

Nothing in this package opens a port, a socket or a file, or reads a clock: timestamps are
passed in. Each codec raises only its own ``ProtocolError`` subclass on bad input.
"""
