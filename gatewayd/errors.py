"""The gateway's one exception root and its few subclasses."""


class GatewayError(Exception):
    """Root of every error the gateway raises on purpose."""


class ConfigError(GatewayError):
    """The configuration (file, environment or CLI) is invalid. Exits with code 2."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        super().__init__("\n".join(f"{source}: {p}" for p in problems))


class PluginError(GatewayError):
    """A plugin could not be loaded or registered something invalid."""


class DeviceUnavailable(GatewayError):
    """The device is not there (unplugged, port missing, reader gone).

    The driver base reports the device ``offline`` and retries opening it quickly, without the
    exponential backoff reserved for devices that fail.
    """


class DeviceFailed(GatewayError):
    """The device is there but misbehaves; reported ``failed`` and restarted with backoff."""


class UnsupportedAction(GatewayError):
    """A device was asked for an action its driver does not offer (HTTP 404)."""
