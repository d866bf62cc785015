"""Errors the CLI reports as one sentence, with the exit status docs/reliability.md promises (1 runtime, 2 usage)."""


class DiceError(Exception):
    """A failure the user can act on. `str(error)` is the sentence shown to them."""

    exit_code = 1


class UsageError(DiceError):
    """Bad input from the user: a missing file, an unknown model, a malformed option (exit 2)."""

    exit_code = 2


class IncompatibleError(UsageError):
    """Artifacts that do not belong together (another model's cache, another family's enhancer)."""


class DamagedError(DiceError):
    """An artifact that cannot be used as it is: inconsistent datasets, NaN or infinite numbers (exit 1)."""
