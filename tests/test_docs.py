"""The documents keep up with the code: one troubleshooting entry per finding code, links that land, every shell
block run as printed against a real server (or marked with the reason it is not, or the test that runs it:
``<!-- not-run: reason -->``, ``<!-- run-by: tests/x.py -->`` on the line above), and every verdict and message
they quote in the words the code prints."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from tsmigrate.janitor import ScratchDatabase
from tsmigrate.lint.context import RULES
from tsmigrate.preflight.checks import CHECKS

PROJECT = Path(__file__).resolve().parents[1]
DOCS = sorted((PROJECT / "docs").glob("*.md"))
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    found = set()
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            title = line.lstrip("#").strip().lower()
            found.add(re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", title)))
    return found


def test_every_finding_code_has_a_troubleshooting_entry():
    text = (PROJECT / "docs" / "troubleshooting.md").read_text()
    entries = set(re.findall(r"^\| (TS\d{3}|PF\d{3}) \|", text, re.MULTILINE))
    assert entries == set(RULES) | set(CHECKS)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_links_of_the_guide_land(doc):
    broken = []
    for match in _LINK.finditer(doc.read_text()):
        target = match["target"]
        if target.startswith(("http://", "https://")):
            continue
        file, _, anchor = target.partition("#")
        path = (doc.parent / file).resolve() if file else doc
        if not path.exists():
            broken.append(f"{target}: no file {path}")
        elif anchor and anchor not in anchors(path):
            broken.append(f"{target}: no heading #{anchor} in {path.name}")
    assert broken == []


def test_the_readme_links_the_guide():
    assert "](docs/operator-guide.md)" in (PROJECT / "README.md").read_text()


# -- every shell block a document prints is run, or says why not -------------------------------------------

DOCUMENTS = [PROJECT / "README.md", *DOCS]
SHELL_LANGUAGES = ("sh", "bash", "console")
_FENCE = re.compile(r"^```(\w*)\s*$")
_MARKER = re.compile(r"^<!--\s*(?P<kind>not-run|run-by):\s*(?P<value>.+?)\s*-->$")


@dataclass(frozen=True)
class ShellBlock:
    doc: Path
    line: int  # of the opening fence, 1-based
    text: str
    marker: str | None  # "not-run" or "run-by"
    value: str | None  # the reason, or the test file

    def __str__(self) -> str:
        return f"{self.doc.relative_to(PROJECT)}:{self.line}"

    def commands(self) -> list[str]:
        """The block's command lines, comments and blank lines left out, whitespace runs made one space."""
        found = []
        for line in self.text.splitlines():
            command = re.sub(r"\s+#\s.*$", "", line).strip()
            if command and not command.startswith("#"):
                found.append(" ".join(command.split()))
        return found


def shell_blocks() -> list[ShellBlock]:
    blocks = []
    for doc in DOCUMENTS:
        lines = doc.read_text().splitlines()
        i = 0
        while i < len(lines):
            fence = _FENCE.match(lines[i])
            if fence is None:
                i += 1
                continue
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            if fence[1] in SHELL_LANGUAGES:
                before = next((lines[k].strip() for k in range(i - 1, -1, -1) if lines[k].strip()), "")
                marked = _MARKER.match(before)
                blocks.append(
                    ShellBlock(
                        doc,
                        i + 1,
                        "\n".join(lines[i + 1 : end]),
                        marked["kind"] if marked else None,
                        marked["value"] if marked else None,
                    )
                )
            i = end + 1
    return blocks


BLOCKS = shell_blocks()


def test_the_documents_have_shell_blocks_to_check():
    assert len(BLOCKS) >= 15 and any(b.marker is None for b in BLOCKS)


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "not-run"], ids=str)
def test_a_block_not_run_says_why(block):
    assert len(block.value.split()) >= 4, f"{block}: say why this block cannot run here"


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker == "run-by"], ids=str)
def test_a_block_run_by_a_test_names_one_that_runs_each_of_its_commands(block):
    test_file = PROJECT / block.value
    assert test_file.is_file() and test_file.name.startswith("test_"), f"{block}: no test file {block.value}"
    source = " ".join(test_file.read_text().split())
    if f'"{block.doc.name}"' in source:
        return  # the test reads the document itself and runs its blocks as printed (tests/test_rollback_doc.py)
    missing = [command for command in block.commands() if command not in source]
    assert missing == [], f"{block}: {block.value} does not hold these commands as printed"


@pytest.fixture
def factory_telemetry(local_server, legacy_template, tmp_path):
    """The documents' database: a legacy MS5.0 database named factory_telemetry and their login role migrator,
    with what the placeholders stand for (a service file for PGSERVICE=ms5, a directory for the key file)."""
    admin_conninfo = local_server.conninfo()
    password = secrets.token_hex(12)
    with psycopg.connect(admin_conninfo, autocommit=True) as admin:
        if admin.execute("SELECT 1 FROM pg_roles WHERE rolname = 'migrator'").fetchone() is not None:
            pytest.skip("the test server has a role migrator of its own: this test makes the documents' role")
        admin.execute(sql.SQL("CREATE ROLE migrator LOGIN SUPERUSER PASSWORD {}").format(sql.Literal(password)))
    try:
        yield from documents_database(local_server, legacy_template, tmp_path, password)
    finally:
        with psycopg.connect(admin_conninfo, autocommit=True) as admin:
            admin.execute("DROP ROLE migrator")


def documents_database(local_server, legacy_template, tmp_path, password):
    admin_conninfo = local_server.conninfo()
    with ScratchDatabase(admin_conninfo, "factory_telemetry", template=legacy_template):
        passfile = tmp_path / "pgpass"  # the documents keep the password out of the DSN: libpq reads it here
        passfile.write_text(f"{local_server.host}:{local_server.port}:*:migrator:{password}\n")
        passfile.chmod(0o600)
        service_file = tmp_path / "pg_service.conf"
        service_file.write_text(
            f"[ms5]\nhost={local_server.host}\nport={local_server.port}\ndbname=factory_telemetry\nuser=migrator\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(
            DSN=f"postgresql://migrator@{local_server.host}:{local_server.port}/factory_telemetry",
            PGSERVICEFILE=str(service_file),
            PGPASSFILE=str(passfile),
            # Where the suites write, and a short look for writers on a quiet server: the commands stay as printed.
            PYTEST_ADDOPTS=f"--reports={tmp_path / 'reports'} --backups={tmp_path / 'backups'} --write-sample=0.3",
        )
        places = {
            "db.example:5432": f"{local_server.host}:{local_server.port}",
            "db.plant.local:5432": f"{local_server.host}:{local_server.port}",
            "PGHOST=db.plant.local": f"PGHOST={local_server.host} PGPORT={local_server.port}",
            "/etc/tsmigrate/backup.key": str(tmp_path / "backup.key"),
        }
        yield env, places


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.marker is None], ids=str)
def test_a_block_runs_as_printed_against_a_real_server(block, factory_telemetry):
    env, places = factory_telemetry
    script = block.text
    for placeholder, value in places.items():
        script = script.replace(placeholder, value)
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, (
        f"{block} exited {result.returncode}:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )


# -- the words a document quotes are the words the code prints --------------------------------------------

# What a run's last line and a restore begin with (tsmigrate/summary.py, tsmigrate/restore.py).
_VERDICT_HEAD = re.compile(r"^(NO-GO|GO|SUCCESS|PASSED|RESTORED|RESTORE|NOT RESTORED|FAILED|STOPPED|BELOW TARGET)\b")
_QUOTED = re.compile(r"`([^`\n]+)`")
# Where a quotation leaves something out: "...", a <placeholder>, a count, or a lone capital standing for a value.
_ELISION = re.compile(r"\.\.\.|…|<[^>]*>|\b[NXY]\b|\b\d+\b|age1")


def printed(words: str, code: str, pieces: int = 3) -> bool:
    """``words`` as the code prints them: found whole, or made of at most ``pieces`` runs of words the code
    holds side by side (a message composed from parts: "STOPPED: " + the reason, a count between words)."""
    if words in code:
        return True
    split = words.split()
    if pieces == 1 or len(split) < 2:
        return False
    for cut in range(len(split) - 1, 0, -1):
        head = " ".join(split[:cut])
        if head in code and printed(" ".join(split[cut:]), code, pieces - 1):
            return True
    return False


def printed_words() -> str:
    """The package's source with adjacent string literals joined, as the messages they make."""
    text = "\n".join(p.read_text() for p in sorted((PROJECT / "tsmigrate").rglob("*.py")))
    return re.sub(r"[\"']\s*\n\s*(?:f|rf|fr)?[\"']", "", text)


def quotations(doc: Path) -> list[tuple[int, str]]:
    """Verdict lines anywhere, and the first column of the tables of messages (``| message |``)."""
    found = []
    in_messages = False
    for number, line in enumerate(doc.read_text().splitlines(), 1):
        if line.startswith("| "):
            header = line.split("|")[1].strip()
            if header in ("message", "last line says"):
                in_messages = True
                continue
        else:
            in_messages = False
        spans = _QUOTED.findall(line.split("|")[1] if in_messages and line.startswith("| ") else "")
        spans += [s for s in _QUOTED.findall(line) if _VERDICT_HEAD.match(s)]
        found += [(number, s) for s in dict.fromkeys(spans)]
    return found


@pytest.mark.parametrize("doc", DOCUMENTS, ids=lambda p: p.name)
def test_every_verdict_and_message_a_document_quotes_is_what_the_code_prints(doc):
    code = printed_words()
    wrong = []
    for number, quoted in quotations(doc):
        for part in _ELISION.split(quoted):
            words = part.strip(" .,:;/")
            if len(words) >= 3 and not printed(words, code):
                wrong.append(f"{doc.name}:{number}: `{quoted}`: the code never prints {words!r}")
    assert wrong == []
