"""Processes a killed run left behind: anything still in its process group, and any client program whose
command line names its database."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

# The client programs a run starts; one of these naming the run's database after the run died is a leftover.
CLIENT_PROGRAMS = {"pg_dump", "pg_restore", "pg_dumpall", "psql"}
LEFTOVER_GRACE = 2.0  # seconds a child may take to follow its killed parent


@dataclass(frozen=True)
class Leftover:
    """A process of the killed run still alive; its command line with the server password masked."""

    pid: int
    program: str
    command: str


def _processes():
    """(pid, process group, argv) of every live user-space process, read from /proc."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            continue
        if not raw:
            continue  # a kernel thread or a zombie
        fields = stat[stat.rindex(")") + 2 :].split()
        state, pgrp = fields[0], int(fields[2])
        if state == "Z":
            continue
        argv = [a.decode(errors="replace") for a in raw.rstrip(b"\0").split(b"\0")]
        yield pid, pgrp, argv


def leftovers(dbname: str, pgid: int, password: str) -> list[Leftover]:
    """Processes of the dead run still alive: anything in its process group, and any client program
    whose command line names its database (or a scratch copy of it, ``<dbname>_...``)."""
    names_db = re.compile(re.escape(dbname) + r"(?![0-9A-Za-z])")
    found = []
    for pid, pgrp, argv in _processes():
        if pid == os.getpid():
            continue
        program = Path(argv[0]).name
        command = " ".join(argv)
        if pgrp == pgid or (program in CLIENT_PROGRAMS and names_db.search(command)):
            if password:
                command = command.replace(password, "***")
            found.append(Leftover(pid, program, command[:200]))
    return found


def leftovers_after_grace(dbname: str, pgid: int, password: str) -> list[Leftover]:
    """leftovers(), once the killed run's children had LEFTOVER_GRACE seconds to follow it."""
    deadline = time.monotonic() + LEFTOVER_GRACE
    while True:
        found = leftovers(dbname, pgid, password)
        if not found or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
