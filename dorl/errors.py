"""Errors a user can fix (bad config, bad input, missing artifacts) versus bugs.

A `UserError` is printed as one clear message, without a traceback, and the process exits with
`EXIT_USER_ERROR`. Kubernetes Jobs use that exit code to fail fast instead of retrying
(see k8s/ podFailurePolicy), so it must stay distinct from crashes (1) and signals (128+n).
"""

EXIT_USER_ERROR = 2


class UserError(Exception):
    """Something the user can fix: the message says what and where."""


class ConfigError(UserError):
    """A configuration key, value or preset is wrong."""


class StoreError(UserError):
    """An artifact URI, store or manifest problem (missing, incomplete, corrupt, unreachable)."""


class IntegrityError(StoreError):
    """A file's bytes no longer match the sha256 recorded in its manifest."""


class DataError(UserError):
    """Bad raw or prepared data: the message names file, record and field."""
