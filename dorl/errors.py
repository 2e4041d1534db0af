"""Errors a user can fix (bad config, bad input, missing artifacts) versus transient faults and bugs.

The exit-code contract (docs/kubernetes.md, "Exit codes"), which Kubernetes Jobs, JobSets and Argo retries rely on:

  0   done
  2   user error (`UserError`): retrying cannot help, never retried
  75  transient (`TransientError`, EX_TEMPFAIL): S3 throttling, timeouts or connection errors left after
      botocore's own retries, a rendezvous timeout; retried
  any other code: a crash (a bug, OOM, a signal), retried a bounded number of times

A `UserError` is printed as one clear message, without a traceback. `dorl launch` keeps these codes
through torchrun and the DeepSpeed launcher, which would otherwise turn a worker's 2 into 1.
"""

EXIT_OK = 0
EXIT_USER_ERROR = 2
EXIT_TRANSIENT = 75


class UserError(Exception):
    """Something the user can fix: the message says what and where."""


class TransientError(Exception):
    """A fault that may go away by itself (the service is throttling, unreachable or timing out): exit 75."""


class ConfigError(UserError):
    """A configuration key, value or preset is wrong."""


class StoreError(UserError):
    """An artifact URI, store or manifest problem (missing, incomplete, corrupt, unreachable)."""


class TransientStoreError(StoreError, TransientError):
    """S3 throttled, timed out or could not be reached after botocore's retries (exit 75, not 2)."""


class IntegrityError(StoreError):
    """A file's bytes no longer match the sha256 recorded in its manifest."""


class DataError(UserError):
    """Bad raw or prepared data: the message names file, record and field."""


class Stopped(BaseException):
    """SIGTERM: the pod is being stopped (deleted, preempted, drained, past its deadline). `dorl` exits 75 at once
    instead of waiting out the grace period to be killed: nothing is half-written (artifacts and checkpoints
    commit atomically), and the next attempt resumes (complete work skipped, training from its last checkpoint).
    A BaseException, like KeyboardInterrupt, so that no `except Exception` swallows it."""


def exit_code_of(codes) -> int:
    """One exit code for a group of worker exit codes, by the contract: a user error anywhere wins (retrying
    cannot help), then a transient fault, then a crash (1); 0 only when every worker succeeded."""
    codes = list(codes)
    if EXIT_USER_ERROR in codes:
        return EXIT_USER_ERROR
    if EXIT_TRANSIENT in codes:
        return EXIT_TRANSIENT
    return 0 if all(c == 0 for c in codes) else 1
