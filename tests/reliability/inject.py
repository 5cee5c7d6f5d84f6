"""Run the p2e CLI with one injected fault, chosen by $P2E_FAULT (the reliability suite's launcher):

  kill-before-rename  SIGKILL this process the moment a finished temp file (.p2e-tmp-*) is about to
                      be renamed to its real name: the worst moment of an atomic write
  enospc              every fsync fails with ENOSPC, as on a full disk (used where no small file
                      system can be mounted)

Usage: python tests/reliability/inject.py ARGS...  (ARGS as for `p2e`)
"""

import errno
import os
import signal
import sys

FAULT = os.environ.get("P2E_FAULT", "")


def _kill_before_rename() -> None:
    replace = os.replace

    def dying_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fsdecode(src)).startswith(".p2e-tmp-"):
            os.kill(os.getpid(), signal.SIGKILL)
        return replace(src, dst, *args, **kwargs)

    os.replace = dying_replace


def _enospc() -> None:
    def full_fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    os.fsync = full_fsync


FAULTS = {"kill-before-rename": _kill_before_rename, "enospc": _enospc}

if __name__ == "__main__":
    if FAULT not in FAULTS:
        sys.exit(f"unknown P2E_FAULT {FAULT!r}; one of: {', '.join(FAULTS)}")
    FAULTS[FAULT]()
    from p2e_cli.cli import main

    sys.exit(main(sys.argv[1:]))
