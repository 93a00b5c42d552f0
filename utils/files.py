"""Files that appear complete or not at all."""
import os


def write_atomic(path, write):
    """Call write(tmp) on a temporary name beside `path`, then rename it to `path`: a crash or
    a full disk never leaves a half-written `path` (the temporary file is removed on failure)."""
    tmp = f"{path}.tmp.{os.getpid()}"
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
