"""Copies of a PostgreSQL installation with extension files left out or added.

A server that lacks TimescaleDB, or one whose TimescaleDB package was upgraded under a database still
on the old version, is a copy of the installation with some files left out or added. PostgreSQL finds
its share and library directories relative to its programs, so a copy that keeps the layout (bin, lib
and share under the same prefix) runs as the original does. The programs are copied (the server
resolves symlinks to find itself); everything else is linked, one entry at a time.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path

from . import ServerStartError


def installation_dirs(bindir: Path) -> tuple[Path, Path]:
    """(sharedir, pkglibdir) of the installation whose programs are in ``bindir``."""

    def ask(flag: str) -> Path:
        result = subprocess.run([str(bindir / "pg_config"), flag], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise ServerStartError(f"{bindir / 'pg_config'} {flag} failed: {result.stderr.strip()}")
        return Path(result.stdout.strip())

    return ask("--sharedir"), ask("--pkglibdir")


def assemble(dest: Path, bindir: Path, *, leave_out: Iterable[str] = (), add: Iterable[Path] = ()) -> Path:
    """A copy of ``bindir``'s installation under ``dest``; returns the copy's bin directory.

    ``leave_out``: name patterns of files in the library directory and in share/extension to omit.
    ``add``: files to put beside them (``.so`` into the library directory, the rest into share/extension),
    in place of any file of the same name.
    """
    sharedir, libdir = installation_dirs(bindir)
    patterns = tuple(leave_out)

    def placed(path: Path) -> Path:
        return dest / path.relative_to(path.anchor)

    new_bindir = placed(bindir)
    shutil.copytree(bindir, new_bindir, symlinks=True)
    _link_entries(libdir, placed(libdir), patterns)
    _link_entries(sharedir, placed(sharedir), (), explode={"extension": patterns})
    for extra in add:
        into = placed(libdir) if extra.suffix == ".so" else placed(sharedir) / "extension"
        (into / extra.name).unlink(missing_ok=True)
        os.symlink(extra, into / extra.name)
    return new_bindir


def _link_entries(
    source: Path, target: Path, leave_out: tuple[str, ...], explode: dict[str, tuple[str, ...]] | None = None
) -> None:
    """``target`` as a directory of links to ``source``'s entries, but those matching ``leave_out``;
    the subdirectories named in ``explode`` are made the same way (with their own patterns)."""
    target.mkdir(parents=True, exist_ok=True)
    for entry in source.iterdir():
        if any(fnmatch.fnmatch(entry.name, p) for p in leave_out):
            continue
        if explode and entry.name in explode and entry.is_dir():
            _link_entries(entry, target / entry.name, explode[entry.name])
        else:
            os.symlink(entry, target / entry.name)
