"""Secret redaction: a structlog processor (and a plain function for Sentry events) that removes every known
secret value from every string it can reach, URLs included.

The secrets are the exact values (`Settings.secret_values()`), plus their percent-encoded and decoded forms,
because a password inside a URL is often written percent-encoded. Longer secrets are replaced first so that a
secret containing another one is removed whole.

What is stored is redacted too: `install_stored(secrets)` (the CLI, once the settings are known) sets the
redactor that worker/runtime/runner.py applies to every finished attempt's error and result before it is recorded
(tests/test_security_stored_secrets.py).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any
from urllib.parse import quote, quote_plus, unquote

__all__ = ["REDACTED", "Redactor", "install_stored", "stored"]

REDACTED = "[REDACTED]"

_PLAIN = (str, int, float, bool, type(None))
# What a UUID, an ISO-8601 timestamp or a number is written with: a secret not spelled in it cannot hide there.
_ID_ALPHABET = frozenset("0123456789abcdefABCDEF-:.+TZ")
_MEMO_MAX = 4096


def _forms(secret: str) -> set[str]:
    forms = {secret, quote(secret, safe=""), quote_plus(secret, safe=""), unquote(secret)}
    return {f for f in forms if f}


class Redactor:
    """`Redactor(secrets)` is a structlog processor; `redactor.redact(value)` cleans any JSON-like value."""

    def __init__(self, secrets: Iterable[str]) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret:
                forms |= _forms(secret)
        self.secrets: tuple[str, ...] = tuple(sorted(forms, key=len, reverse=True))
        self.longest = len(self.secrets[0]) if self.secrets else 0
        # each form as it reads inside a JSON string (json.dumps(..., ensure_ascii=False)): `"` and `\` escaped
        self.json_forms: tuple[str, ...] = tuple({json.dumps(f, ensure_ascii=False)[1:-1] for f in self.secrets})
        # True when some secret could appear inside a UUID or a timestamp's text (then those are scanned too).
        self.fits_ids = any(set(f) <= _ID_ALPHABET for f in self.secrets)
        self._memo: dict[Any, Any] = {}

    def redact_repeated(self, value: Any) -> Any:
        """`redact(value)` for a value that recurs (a task type, a worker id, a tuple of them): computed once,
        then remembered (a bounded memo, dropped whole when full)."""
        try:
            return self._memo[value]
        except KeyError:
            pass
        except TypeError:  # unhashable
            return self.redact(value)
        out = self.redact(value)
        if isinstance(out, list) and isinstance(value, tuple):
            out = tuple(out)
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[value] = out
        return out

    def __bool__(self) -> bool:
        return bool(self.secrets)

    def redact_text(self, text: str) -> str:
        for secret in self.secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def redact_json(self, value: Any, text: str | None = None) -> Any:
        """`value` itself when its JSON text (`text`, or json.dumps(value, ensure_ascii=False)) holds no secret,
        else a redacted copy: the common case costs a few substring searches, no walk of the value."""
        if not self.secrets or value is None:
            return value
        if text is None:
            text = json.dumps(value, ensure_ascii=False)
        if any(form in text for form in self.json_forms):
            return self.redact(value)
        return value

    def redact(self, value: Any) -> Any:
        """A copy of `value` with every secret replaced; containers are walked, other objects stringified
        only when their text holds a secret."""
        if not self.secrets:
            return value
        if isinstance(value, str):
            return self.redact_text(value)
        if isinstance(value, _PLAIN):
            return value
        if isinstance(value, Mapping):
            return {self.redact(k): self.redact(v) for k, v in value.items()}
        if isinstance(value, list | tuple | set | frozenset):
            return [self.redact(v) for v in value]
        text = str(value)
        cleaned = self.redact_text(text)
        return value if cleaned == text else cleaned

    def __call__(self, _logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> Any:
        if not self.secrets:
            return event_dict
        for key in list(event_dict):
            event_dict[key] = self.redact(event_dict[key])
        return event_dict


_stored = Redactor(())


def install_stored(secrets: Iterable[str]) -> None:
    """Set the redactor applied to what is stored (a finished attempt's error and result): process-wide, like
    the logging configuration."""
    global _stored
    _stored = Redactor(secrets)


def stored() -> Redactor:
    return _stored
