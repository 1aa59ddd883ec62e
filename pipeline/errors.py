"""One small exception hierarchy. Library code raises these; only the CLI prints them."""


class TinypipeError(Exception):
    """Base class: a problem the user can act on. Message is one line, names the culprit."""

    exit_code = 2


class ConfigError(TinypipeError):
    """Bad YAML config or bad option value."""


class DataError(TinypipeError):
    """Unreadable image, empty class, wrong shape, bad npz."""


class ModelError(TinypipeError):
    """Model cannot be built, converted, quantized or run."""


class UnsupportedOpError(ModelError):
    """An op a backend cannot handle."""


class InterpreterCrash(ModelError):
    """The tflite_micro interpreter aborted in its child process."""


class BuildError(TinypipeError):
    """Firmware build (PlatformIO / compiler) failed."""


class DeviceError(TinypipeError):
    """Board missing, link lost, protocol failure, timeouts."""
