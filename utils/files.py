"""Files that appear complete or not at all."""
import errno
import os
import re
import shutil

LOW_SPACE = 16 << 20  # bytes: less left on the disk after a failed write means the disk is full


class DiskFull(OSError):
    """A write failed because the disk holding the file is full (named, with what is left)."""


def write_atomic(path, write):
    """Call write(tmp) on a temporary name beside `path`, then rename it to `path`: a crash or
    a full disk never leaves a half-written `path` (the temporary file is removed on failure).
    A write that fails on a full disk raises DiskFull naming `path`, whatever the writer raised
    (torch.save says only `inline_container.cc: unexpected pos`)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        full = isinstance(e, (OSError, RuntimeError)) and _full(path, e)
        if os.path.exists(tmp):
            os.remove(tmp)
        if full:
            free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
            raise DiskFull(errno.ENOSPC, f"cannot write {path}: the disk holding it is full "
                           f"({free / 2 ** 20:.0f} MiB free once the partial file is removed); "
                           "free space or write elsewhere") from e
        raise


def _full(path, error):
    if getattr(error, "errno", None) == errno.ENOSPC:
        return True
    try:
        return shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free < LOW_SPACE
    except OSError:
        return False


def pid_alive(pid):
    """False only when no process `pid` runs on this host (or `pid` names none: not a positive
    integer; os.kill would read 0 and -1 as groups of processes)."""
    try:
        if int(pid) <= 0:
            return False
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, OverflowError):
        return False
    except PermissionError:  # it runs, as another user
        pass
    return True


def remove_stale(folder):
    """Remove the temporary files of `write_atomic` (<name>.tmp.<pid>) in `folder` whose process
    no longer runs (a killed run's); returns their paths."""
    removed = []
    for name in os.listdir(folder):
        m = re.fullmatch(r".+\.tmp\.(\d+)", name)
        if m and not pid_alive(m[1]):
            os.remove(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
    return removed
