"""No password in what a run writes: every string of the JSON record, and the finished HTML and XML files.

The record is redacted value by value before it is serialised (cutting JSON text could break it); the
files pytest-html and JUnit wrote are scrubbed of known secrets once more, in every form escaping gives them.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from ..target import redact


def redact_record(value: Any, secrets: tuple[str, ...] = ()) -> Any:
    """Every string in a JSON-ready value, with passwords hidden (before serialising: never cut JSON text)."""
    if isinstance(value, str):
        return redact(value, secrets)
    if isinstance(value, dict):
        return {redact_record(k, secrets): redact_record(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_record(v, secrets) for v in value]
    return value


def scrub_secrets(text: str, secrets: tuple[str, ...]) -> str:
    """Replace known secrets in a finished HTML/XML file, also where escaping changed how they look.

    Only literal secrets: a pattern could eat the quotes of the JSON that pytest-html embeds.
    """
    for secret in secrets:
        if not secret:
            continue
        json_form = json.dumps(secret)[1:-1]
        for form in {secret, escape(secret), escape(secret, quote=False), json_form, escape(json_form)}:
            text = text.replace(form, "***")
    return text
