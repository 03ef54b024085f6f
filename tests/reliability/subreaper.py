"""Run a command as a desktop session does: under a child subreaper (systemd --user, a terminal).

Orphans are reparented to this process instead of to pid 1, so a Ray worker whose raylet died
sees a live parent and goes on working: the case langspec's own watchdog must handle. The command
leads a process group of its own; its pid goes to the file named first. This process reaps every
orphan and exits once none is left.

    python subreaper.py PIDFILE COMMAND...
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys

PR_SET_CHILD_SUBREAPER = 36

if __name__ == "__main__":
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    command = subprocess.Popen(sys.argv[2:], start_new_session=True)
    with open(sys.argv[1] + ".tmp", "w") as handle:
        handle.write(str(command.pid))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        try:
            os.wait()
        except ChildProcessError:
            break
