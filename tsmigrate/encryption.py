"""Backups at rest, encrypted (optional, off by default): every file of a backup directory but its
manifest becomes an age file, readable only with the key file the plan names.

age (https://age-encryption.org/v1, through pyrage, the Python binding of the Rust implementation):
X25519 for the file key, ChaCha20-Poly1305 in 64 KiB chunks (STREAM) for the content, so files of
any size are encrypted and decrypted streaming, and any changed, cut or reordered byte is refused.
The files are standard age files: the `age` command (`age -d -i KEYFILE FILE.age`) decrypts them too.

The key file is an age identity file (as `age-keygen` writes it, or `tsmigrate backup
new-key FILE`): one ``AGE-SECRET-KEY-1...`` line, readable by its owner only. The manifest stays
readable (versions, fingerprints, sizes; no row data) and records the key's public half (``age1...``),
never the key, so a wrong key is named before anything is decrypted or restored.

Everything that reads a dump (verification, restore, the post-flight's baseline) gets a decrypted
copy beside the backup (:func:`opened`), readable by its owner only and removed afterwards.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import pyrage
from pyrage import x25519

from .errors import BackupError

SCHEME = "age-x25519"
SUFFIX = ".age"
_SECRET_LINE = re.compile(r"^AGE-SECRET-KEY-1[0-9A-Z]+$")
# A decrypted copy beside the backup: ".<backup name>.plain-<pid>-<random>"
_PLAIN_COPY = re.compile(r"^\.(?P<backup>.+)\.plain-(?P<pid>\d+)-[^/]+$")


class KeyFileError(BackupError):
    """The key file cannot be used, or is not the one a backup was encrypted with; says which file and what to do."""


@dataclass(frozen=True)
class BackupKey:
    """An age identity read from a key file. ``recipient`` is its public half: safe to print and record."""

    path: Path
    recipient: str
    identity: x25519.Identity = field(repr=False, compare=False)


def new_key(path: Path) -> BackupKey:
    """Write a new key file (owner-only, never over an existing file) in age-keygen's format."""
    path = Path(path)
    identity = x25519.Identity.generate()
    recipient = str(identity.to_public())
    text = (
        f"# created: {datetime.now(UTC).isoformat(timespec='seconds')} by tsmigrate\n"
        f"# public key: {recipient}\n{identity}\n"
    )
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise KeyFileError(
            f"{path} exists already; a key file is never overwritten (backups encrypted with it "
            "would be lost): choose another name"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"cannot create the key file {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return BackupKey(path, recipient, identity)


def load_key(path: Path) -> BackupKey:
    """Read a key file; KeyFileError names the file and says what to do."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        lines = path.read_text(encoding="ascii").splitlines()
    except FileNotFoundError:
        raise KeyFileError(
            f"the key file {path} does not exist; give the key file the backups are encrypted with "
            "(make a new one with: tsmigrate backup new-key FILE)"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyFileError(f"cannot read the key file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise KeyFileError(
            f"the key file {path} is readable by others (mode {stat.S_IMODE(mode):o}); "
            f"make it the owner's alone: chmod 600 {path}"
        )
    secrets = [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if len(secrets) != 1 or not _SECRET_LINE.match(secrets[0]):
        raise KeyFileError(
            f"{path} is not an age key file: it must hold one AGE-SECRET-KEY-1... line "
            "(as age-keygen or tsmigrate backup new-key writes it)"
        )
    try:
        identity = x25519.Identity.from_str(secrets[0])
    except pyrage.IdentityError as exc:
        raise KeyFileError(f"{path} holds a damaged age key ({exc})") from None
    return BackupKey(path, str(identity.to_public()), identity)


# -- what a manifest says --------------------------------------------------------------------------


def is_encrypted(manifest: dict) -> bool:
    return bool(manifest.get("encryption"))


def check_key(manifest: dict, key: BackupKey | None, where: Path) -> None:
    """Refuse, before anything is decrypted, a missing key or the key of another recipient."""
    enc = manifest.get("encryption")
    if not enc:
        return
    recorded = enc.get("key_file") or "?"
    if key is None:
        raise KeyFileError(
            f"the backup {where} is encrypted (for {enc['recipient']}, key file {recorded} when it was "
            "taken): name that key file as key_file under [backup] in plan.toml, or give it with "
            "--key-file"
        )
    if key.recipient != enc["recipient"]:
        raise KeyFileError(
            f"the key file {key.path} does not open the backup {where}: it holds the key of "
            f"{key.recipient}, the backup was encrypted for {enc['recipient']} (key file {recorded} when "
            "it was taken). Give that key file; nothing was decrypted or restored"
        )


# -- sealing ---------------------------------------------------------------------------------------


def _digest(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"size": path.stat().st_size, "sha256": digest.hexdigest()}


def seal(directory: Path, plain_files: dict[str, dict], key: BackupKey) -> dict:
    """Encrypt each file of ``plain_files`` (names relative to ``directory``) to ``<name>.age`` and remove the
    plaintext. Returns the manifest's ``encryption`` section."""
    for name in plain_files:
        source = directory / name
        sealed = source.with_name(source.name + SUFFIX)
        partial = source.with_name(f".{source.name}{SUFFIX}.part")
        try:
            pyrage.encrypt_file(str(source), str(partial), [x25519.Recipient.from_str(key.recipient)])
        except (pyrage.EncryptError, OSError) as exc:
            partial.unlink(missing_ok=True)
            raise BackupError(f"cannot encrypt {source}: {exc}") from None
        partial.chmod(0o600)
        partial.rename(sealed)
        source.unlink()
    return {
        "scheme": SCHEME,
        "recipient": key.recipient,
        "key_file": str(key.path),
        # What the decrypted files must be, byte for byte: a decrypted copy is checked against it.
        "files": plain_files,
    }


class _Hashing:
    """A writer for pyrage.decrypt_io: hashes what passes, and writes it on when given a file."""

    def __init__(self, out=None):
        self.digest, self.size, self.out = hashlib.sha256(), 0, out

    def write(self, data) -> int:
        self.digest.update(data)
        self.size += len(data)
        if self.out is not None:
            self.out.write(data)
        return len(data)

    def flush(self) -> None:
        if self.out is not None:
            self.out.flush()

    def matches(self, meta: dict) -> bool:
        return self.size == meta["size"] and self.digest.hexdigest() == meta["sha256"]


def _decrypt(source: Path, key: BackupKey, meta: dict, out_path: Path | None) -> None:
    """Decrypt one file (to ``out_path``, or only to check it); BackupError names the file."""
    partial = out_path.with_name(f".{out_path.name}.part") if out_path else None
    try:
        with open(source, "rb") as f, _private(partial) if partial else _nothing() as out:
            sink = _Hashing(out)
            pyrage.decrypt_io(f, sink, [key.identity])
    except (pyrage.DecryptError, OSError, ValueError) as exc:
        if partial:
            partial.unlink(missing_ok=True)
        raise BackupError(
            f"{source} does not decrypt with {key.path} ({exc}): the file is damaged or was encrypted with another key"
        ) from None
    if not sink.matches(meta):
        if partial:
            partial.unlink(missing_ok=True)
        raise BackupError(
            f"{source} decrypts to something else than the backup recorded "
            f"(size {sink.size} vs {meta['size']}, sha256 differs)"
        )
    if partial and out_path:  # a partial file exists only where there is an out_path
        partial.rename(out_path)


@contextmanager
def _nothing():
    yield None


def _private(path: Path):
    """A new file only its owner may read, from the first byte on."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb")


def check_decrypts(directory: Path, manifest: dict, key: BackupKey) -> list[str]:
    """Every encrypted file decrypts with ``key`` to what the manifest recorded (nothing is written)."""
    check_key(manifest, key, directory)
    problems = []
    for name, meta in manifest["encryption"]["files"].items():
        try:
            _decrypt(directory / (name + SUFFIX), key, meta, None)
        except BackupError as exc:
            problems.append(str(exc))
    return problems


def decrypt_into(directory: Path, manifest: dict, key: BackupKey, dest: Path, only: str | None = None) -> None:
    """Decrypt the backup's files (those under ``only``, if given) into ``dest``, checked against the manifest."""
    check_key(manifest, key, directory)
    for name, meta in manifest["encryption"]["files"].items():
        if only is not None and not (name == only or name.startswith(only.rstrip("/") + "/")):
            continue
        out = dest / name
        out.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _decrypt(directory / (name + SUFFIX), key, meta, out)


def plain_manifest(manifest: dict, source: Path) -> dict:
    """The manifest of a decrypted copy: the plaintext files, and where it came from."""
    plain = {k: v for k, v in manifest.items() if k != "encryption"}
    plain["files"] = manifest["encryption"]["files"]
    plain["decrypted_from"] = {"path": str(source), "recipient": manifest["encryption"]["recipient"]}
    return plain


# -- decrypted copies beside a backup --------------------------------------------------------------


def _room_for(directory: Path, manifest: dict, only: str | None) -> None:
    needed = sum(
        m["size"]
        for n, m in manifest["encryption"]["files"].items()
        if only is None or n.startswith(only.rstrip("/") + "/")
    ) + (16 << 20)
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise BackupError(
            f"not enough room beside {directory} to decrypt it: {free / 2**30:.2f} GiB free, "
            f"{needed / 2**30:.2f} GiB needed; free room on that disk"
        )


@contextmanager
def opened(directory: Path, manifest: dict, key: BackupKey | None, only: str | None = None) -> Iterator[Path]:
    """A directory holding the backup's files in plaintext (those under ``only``, if given): the backup
    itself when it is not encrypted, else a decrypted copy beside it, removed on leaving."""
    if not is_encrypted(manifest):
        yield directory
        return
    check_key(manifest, key, directory)
    assert key is not None  # check_key refuses an encrypted backup without its key
    remove_stale_copies(directory.parent)
    _room_for(directory.parent, manifest, only)
    copy = Path(tempfile.mkdtemp(prefix=f".{directory.name}.plain-{os.getpid()}-", dir=directory.parent))
    try:
        decrypt_into(directory, manifest, key, copy, only)
        yield copy
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def remove_stale_copies(backups_dir: Path) -> list[Path]:
    """Decrypted copies left by a process that died (killed mid-restore): plaintext that must not stay."""
    removed = []
    for path in Path(backups_dir).glob(".*.plain-*"):
        m = _PLAIN_COPY.match(path.name)
        if not m or not path.is_dir():
            continue
        try:
            os.kill(int(m["pid"]), 0)
            continue  # its process still runs: in use
        except ProcessLookupError:
            pass
        except PermissionError:
            continue  # another user's live process
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed
