"""Errors a user can fix, and how the command-line entry points report them.

A bad config value, list line, file, checkpoint or run folder raises an InputError that names
what is wrong (ConfigError, DataError, CheckpointError, RunFolderInUse; the first two are also
ValueErrors), or FileNotFoundError / FileExistsError. `run_cli` ends such a command with that
message as one line on stderr and exit code 2, without a traceback (AVGN_DEBUG=1 prints it too);
any other exception is a failure, with its traceback and exit code 1 (a full disk:
utils.files.DiskFull, one line naming the file, exit code 1). train.py stopped by SIGTERM
exits with EXIT_STOPPED (3) once its checkpoint is saved; 0 is success only. Called in-process
(tests, notebooks), `main` raises (or returns the code) as usual.
"""
import os
import sys
import traceback

from .files import DiskFull

EXIT_BAD_INPUT = 2
EXIT_STOPPED = 3  # train.py stopped by SIGTERM after saving its checkpoint: --resume auto continues
USER_ERRORS = (FileNotFoundError, FileExistsError)


class InputError(Exception):
    """Bad input that the message tells how to fix."""


class BadValue(InputError, ValueError):
    """A value a builder cannot honour (raised by `require`)."""


def require(section, obj, fixed, why):
    """Raise BadValue naming every key of `fixed` ({field: the value it must have}) that `obj`
    (a config section, named `section`) holds with another value, and the values to set."""
    def text(v):  # as a key=value override writes it
        return str(v).lower() if isinstance(v, bool) else str(v)
    wrong = [k for k, v in fixed.items() if getattr(obj, k) != v]
    if wrong:
        raise BadValue(f"{why}, which has no "
                       + ", ".join(f"{section}.{k}={text(getattr(obj, k))}" for k in wrong)
                       + "; set " + ", ".join(f"{section}.{k}={text(fixed[k])}" for k in wrong))


class CheckpointError(InputError, RuntimeError):
    """A checkpoint file that is missing pieces, truncated, or not one of ours."""


def run_cli(main):
    """Call `main()` as a command: sys.exit with its return value (None: 0), or with
    EXIT_BAD_INPUT after printing the message of an InputError / FileNotFoundError /
    FileExistsError in one line."""
    try:
        code = main()
    except (InputError, DiskFull) + USER_ERRORS as e:
        if os.environ.get("AVGN_DEBUG"):
            traceback.print_exc()
        print(f"error: {e.strerror if isinstance(e, DiskFull) else e}", file=sys.stderr)
        sys.exit(1 if isinstance(e, DiskFull) else EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)
