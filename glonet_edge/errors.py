"""Exceptions with messages that name the problem and the fix."""


class GlonetError(Exception):
    """Base class: every error the package raises on bad input derives from this."""


class ConfigError(GlonetError, ValueError):
    """A config, manifest or argument is malformed or out of range."""


class ArtifactError(GlonetError):
    """A file on disk is missing, truncated, corrupt or fails its checksum."""


class MissingDependencyError(GlonetError, ImportError):
    """An optional library is not installed; the message names the extra to install."""


def require(module: str, extra: str):
    """Import an optional module or raise a clear error naming `pip install glonet-edge[extra]`."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised via monkeypatched imports
        raise MissingDependencyError(
            f"'{module}' is not installed but is needed here; install it with "
            f"`pip install glonet-edge[{extra}]` (or `pip install {module.split('.')[0]}`)."
        ) from exc
