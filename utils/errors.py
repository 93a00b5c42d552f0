"""Errors a user can fix, and how the command-line entry points report them.

A bad config value, list line, file, checkpoint or run folder raises an InputError that names
what is wrong (ConfigError, DataError, CheckpointError, RunFolderInUse; the first two are also
ValueErrors), or FileNotFoundError / FileExistsError. `run_cli` ends such a command with that
message as one line on stderr and exit code 2, without a traceback (AVGN_DEBUG=1 prints it too);
any other exception is a failure, with its traceback and exit code 1. Called in-process (tests,
notebooks), `main` raises as usual.
"""
import os
import sys
import traceback

EXIT_BAD_INPUT = 2
USER_ERRORS = (FileNotFoundError, FileExistsError)


class InputError(Exception):
    """Bad input that the message tells how to fix."""


class CheckpointError(InputError, RuntimeError):
    """A checkpoint file that is missing pieces, truncated, or not one of ours."""


def run_cli(main):
    """Call `main()` as a command: sys.exit with its return value (None: 0), or with
    EXIT_BAD_INPUT after printing the message of an InputError / FileNotFoundError /
    FileExistsError in one line."""
    try:
        code = main()
    except (InputError,) + USER_ERRORS as e:
        if os.environ.get("AVGN_DEBUG"):
            traceback.print_exc()
        print(f"error: {e}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code if isinstance(code, int) else 0)
