"""Keeping credentials out of everything stored or printed: the one place secrets are removed.

What is redacted, and where (the replacement is `[redacted]`):

- **The key in use** (recording, probing): every occurrence of the API key the client sends,
  also URL-encoded, JSON-escaped and so inside `Bearer KEY`, in every part of a response
  before it leaves the client: kept response headers, the raw body, every SSE line, the
  assistant message and usage read from them, error bodies and messages, exception text.
  A host that echoes the key back therefore never gets it into `steps`, `messages`,
  `runs.error`, findings, reports or the terminal. Keys shorter than 8 characters are not
  redacted: nobody issues them, and replacing a word like `sim` everywhere would corrupt the
  trace.
- **Anything shaped like a credential** (`sk-…`, `rk-…`, `pk-…`, `AIza…` API keys, the token
  after `Bearer`/`Basic`): in imported lines (requests, responses, chunks, error bodies,
  headers), in the error bodies and messages of live calls, and in every error line the CLI
  prints. Model text of a live response is left alone unless it holds the key in use: a model
  writing an example `sk-…` string is data.
- **The password of a database connection string** (`password=…` in a PostgreSQL
  keyword/value string, `user:PASSWORD@` in a connection URI): in every error line the CLI
  prints and every message a lake store's connection writes (`traces.store.lake` moves the
  password out of the string before DuckDB sees it; this catches what quotes one anyway).
- **Fields named like a credential** (`api_key`, `Authorization`, `token`, …) in an imported
  request body are dropped, except inside the messages and tool schemas, where names are the
  conversation's data (a tool may well take a parameter called `token`). Response headers are
  never taken whole: only `traces.responses.KEPT_HEADERS` are.

Replacements happen inside JSON strings, so a raw body that was valid JSON stays valid JSON
(a secret outside any string, which only a key made of digits could be, makes the body be
re-serialised from its parsed value instead).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from traces import strict_json
from traces.exchange import Exchange
from traces.model import ExchangeError, StreamEvent

REDACTED = "[redacted]"
"""What a secret is replaced with."""

MIN_SECRET_LENGTH = 8
"""Shorter keys are not redacted (see the module docstring)."""

_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "cookie",
        "set_cookie",
        "token",
        "bearer",
        "password",
        "passwd",
        "secret",
        "credentials",
        "credential",
    }
)
_SECRET_SUFFIXES = ("api_key", "apikey", "_token", "_secret", "_password", "_credentials")
_SECRET_VALUE = re.compile(
    r"^\s*(?:bearer|basic)\s+\S{8,}|\b(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}|\bAIza[0-9A-Za-z_\-]{30,}",
    re.IGNORECASE,
)
"""A request field's value that is a credential as a whole (then the whole value goes)."""
_SECRET_TOKEN = re.compile(
    # Not after a letter, so `task-…` is no `sk-` key; a digit may precede (`%20sk-…`).
    r"(?<![A-Za-z])(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}"
    r"|\bAIza[0-9A-Za-z_\-]{30,}"
    # A scheme's token has a digit: `Bearer authentication` in prose is not a credential.
    r"|(?P<scheme>\b(?:bearer|basic)(?:\s+|%20|\+))(?=[A-Za-z._~+/=\-]*\d)[A-Za-z0-9._~+/=\-]{8,}",
    re.IGNORECASE,
)
"""A credential inside a longer text (an error message quoting a header)."""
_RAW_TOKEN = re.compile(
    # `_SECRET_TOKEN` over raw JSON text: a backslash may escape a `/` inside a token.
    rb"(?<![A-Za-z])(?:sk|rk|pk)-[A-Za-z0-9_\-]{16,}"
    rb"|\bAIza[0-9A-Za-z_\-]{30,}"
    rb"|\b(?:bearer|basic)(?:\s+|%20|\+)(?=[A-Za-z._~+/=\\\-]*\d)[A-Za-z0-9._~+/=\\\-]{8,}",
    re.IGNORECASE,
)
_CONNECTION_PASSWORD = re.compile(
    # libpq's keyword/value form: `password=x`, `password = 'x y'` (quoted, `\\'` escapes).
    r"(?P<key>\bpassword\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|[^\s'\"]+)"
    # A URI's user information: `postgresql://user:PASSWORD@host`.
    r"|(?P<user>\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s:/@]*):[^\s@/]*@",
    re.IGNORECASE,
)
"""A password inside a database connection string (keyword/value or URI form)."""
_DATA_FIELDS = frozenset({"messages", "tools", "tool_choice", "functions", "response_format"})
"""Request fields whose keys are the conversation's data, never credential names."""


def is_secret_name(name: str) -> bool:
    """Whether a field or header name is one a credential travels under."""
    key = name.lower().replace("-", "_")
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES)


def may_hold_token(raw: str | bytes) -> bool:
    """Whether `raw` may hold a credential-shaped token (False: it certainly holds none): the
    lower-case substrings every `_SECRET_TOKEN` match contains. A cheap test that skips the
    regex (and walking a parsed line) for the text that holds none, which is nearly all."""
    # Spelled out rather than a generator over the markers: this runs on every imported line
    # and every live error text, and the generator cost as much as the scans.
    low = raw.lower()
    if isinstance(low, bytes):
        return (
            b"sk-" in low
            or b"rk-" in low
            or b"pk-" in low
            or b"aiza" in low
            or b"bearer" in low
            or b"basic" in low
        )
    return (
        "sk-" in low
        or "rk-" in low
        or "pk-" in low
        or "aiza" in low
        or "bearer" in low
        or "basic" in low
    )


def holds_token(raw: bytes) -> bool:
    """Whether raw JSON text holds a credential-shaped token somewhere (a string of it may,
    once decoded); False for nearly every line, at the cost of a few substring scans."""
    return may_hold_token(raw) and _RAW_TOKEN.search(raw) is not None


def redact_tokens(text: str) -> str:
    """`text` with every credential-shaped token replaced (the same object when none)."""
    if not may_hold_token(text):
        return text
    return _SECRET_TOKEN.sub(lambda m: (m.group("scheme") or "") + REDACTED, text)


def redact_connection_secrets(text: str) -> str:
    """`text` with the password of any database connection string in it replaced (the same
    object when there is none)."""
    if "password" not in text.lower() and "://" not in text:
        return text
    return _CONNECTION_PASSWORD.sub(_connection_replacement, text)


def _connection_replacement(match: re.Match[str]) -> str:
    if match.group("key") is not None:
        return match.group("key") + REDACTED
    return f"{match.group('user')}:{REDACTED}@"


def redact_request(body: dict[str, Any]) -> dict[str, Any]:
    """An imported request `body` without credential fields or values (a copy only when
    something was removed)."""
    cleaned: dict[str, Any] | None = None
    for key, value in body.items():
        if key in _DATA_FIELDS:
            continue
        if is_secret_name(key):
            cleaned = cleaned if cleaned is not None else dict(body)
            del cleaned[key]
            continue
        scrubbed = _scrub_fields(value)
        if scrubbed is not value:
            cleaned = cleaned if cleaned is not None else dict(body)
            cleaned[key] = scrubbed
    return body if cleaned is None else cleaned


def _scrub_fields(value: Any) -> Any:
    """`value` with nested credentials removed; the same object when there were none."""
    if isinstance(value, str):
        return REDACTED if _SECRET_VALUE.search(value) else value
    if isinstance(value, dict):
        out: dict[str, Any] | None = None
        for key, item in value.items():
            if isinstance(key, str) and is_secret_name(key):
                out = out if out is not None else dict(value)
                del out[key]
                continue
            scrubbed = _scrub_fields(item)
            if scrubbed is not item:
                out = out if out is not None else dict(value)
                out[key] = scrubbed
        return value if out is None else out
    if isinstance(value, list):
        items = [_scrub_fields(item) for item in value]
        if any(new is not old for new, old in zip(items, value, strict=True)):
            return items
        return value
    return value


class Redactor:
    """Replaces the given secrets (exact strings) and, with `tokens`, anything shaped like a
    credential, in text and in parsed JSON values."""

    def __init__(self, secrets: Iterable[str | None] = (), *, tokens: bool = False) -> None:
        """`secrets`: exact values (the key in use); `tokens`: also credential-shaped ones."""
        forms: set[str] = set()
        for secret in secrets:
            if not secret or len(secret) < MIN_SECRET_LENGTH:
                continue
            escaped = json.dumps(secret, ensure_ascii=False)[1:-1]
            forms.update(
                {
                    secret,
                    escaped,
                    escaped.replace("/", "\\/"),
                    json.dumps(secret)[1:-1],  # \uXXXX escapes, as `ensure_ascii` writes them
                    quote(secret, safe=""),
                    quote_plus(secret, safe=""),
                }
            )
        # Longest first, so a form containing another is replaced whole.
        self.forms = sorted(forms, key=len, reverse=True)
        self.tokens = tokens

    def __bool__(self) -> bool:
        """Whether this redactor can redact anything at all."""
        return bool(self.forms) or self.tokens

    def text(self, text: str, *, tokens: bool | None = None) -> str:
        """`text` with the secrets replaced (the same object when there were none)."""
        out = text
        for form in self.forms:
            if form in out:
                out = out.replace(form, REDACTED)
        if self.tokens if tokens is None else tokens:
            out = redact_tokens(out)
        return text if out == text else out

    def value(self, value: Any, *, tokens: bool | None = None) -> Any:
        """A parsed JSON value with the secrets replaced in every string, keys included;
        the same object when there were none."""
        if isinstance(value, str):
            return self.text(value, tokens=tokens)
        if isinstance(value, dict):
            out: dict[str, Any] | None = None
            entries = list(value.items())
            for position, (key, item) in enumerate(entries):
                new_key = self.text(key, tokens=tokens) if isinstance(key, str) else key
                new_item = self.value(item, tokens=tokens)
                if out is None and (new_key is not key or new_item is not item):
                    out = dict(entries[:position])
                if out is not None:
                    out[new_key] = new_item
            return value if out is None else out
        if isinstance(value, list):
            items = [self.value(item, tokens=tokens) for item in value]
            if any(new is not old for new, old in zip(items, value, strict=True)):
                return items
            return value
        return value

    def json_text(self, raw: str, *, tokens: bool | None = None) -> str:
        """Raw text that may be JSON, with the secrets replaced; JSON that was valid stays
        valid (re-serialised from its parsed value when a plain replacement would break it)."""
        out = self.text(raw, tokens=tokens)
        if out is raw:
            return raw
        try:
            parsed = strict_json.loads(raw)
        except ValueError:
            return out  # not JSON to begin with: nothing to keep valid
        try:
            strict_json.loads(out)
        except ValueError:
            return json.dumps(self.value(parsed, tokens=tokens), ensure_ascii=False)
        return out

    def error(self, error: ExchangeError | None, *, tokens: bool = True) -> ExchangeError | None:
        """A failed call's error with the secrets out of its message and body."""
        if error is None:
            return None
        message = self.text(error.message, tokens=tokens)
        body = None if error.body is None else self.json_text(error.body, tokens=tokens)
        if message is error.message and body is error.body:
            return error
        return error.model_copy(update={"message": message, "body": body})

    def exchange(self, exchange: Exchange) -> Exchange:
        """`exchange` (changed in place and returned) with the secrets out of everything the
        response brought: headers, raw body, SSE lines and what was read from them, error.
        Error text is also cleared of credential-shaped tokens."""
        if not self:
            return exchange
        exchange.headers = {
            name: self.text(value, tokens=True) for name, value in exchange.headers.items()
        }
        if exchange.response_body is not None:
            # A failed call's body is an error body: credential-shaped tokens go too.
            exchange.response_body = self.json_text(
                exchange.response_body, tokens=True if exchange.error else None
            )
        events = exchange.stream_events
        if events and (self.tokens or self._in("\n".join(event.line for event in events))):
            # One scan of the whole stream first: a step has thousands of lines, and a key in
            # them is the exception.
            exchange.stream_events = [self._event(event) for event in events]
        if exchange.message is not None:
            message = self.value(exchange.message)
            if message is not exchange.message and exchange.stream_events:
                # The assembled text held a secret its lines did not: split across chunks.
                exchange.stream_events = self._split(exchange.stream_events)
            exchange.message = message
        if exchange.usage_raw is not None:
            exchange.usage_raw = self.value(exchange.usage_raw)
        if exchange.finish_reason_raw is not None:
            exchange.finish_reason_raw = self.text(exchange.finish_reason_raw)
        if exchange.upstream_provider is not None:
            exchange.upstream_provider = self.text(exchange.upstream_provider)
        exchange.anomalies = self.value(exchange.anomalies)
        exchange.error = self.error(exchange.error)
        return exchange

    def _in(self, text: str) -> bool:
        """Whether one of the exact secrets occurs in `text`."""
        return any(form in text for form in self.forms)

    def _split(self, events: list[StreamEvent]) -> list[StreamEvent]:
        """`events` with a secret that arrived in pieces, over several chunks, redacted: the
        first piece becomes `[redacted]`, the others lose their part of it, and only the
        chunks so changed are re-serialised."""
        chunks: dict[int, dict[str, Any]] = {}
        texts: dict[tuple[Any, ...], list[tuple[int, list[Any]]]] = {}
        for position, event in enumerate(events):
            if not event.line.startswith("data:"):
                continue
            try:
                chunk = strict_json.loads(event.line[5:])
            except ValueError:
                continue
            if not isinstance(chunk, dict):
                continue
            chunks[position] = chunk
            for key, path in _text_pieces(chunk):
                texts.setdefault(key, []).append((position, path))
        changed: set[int] = set()
        for pieces in texts.values():
            changed |= self._redact_pieces(chunks, pieces)
        out = list(events)
        for position in changed:
            line = events[position].line
            head = "data: " if line.startswith("data: ") else "data:"
            text = head + json.dumps(chunks[position], ensure_ascii=False, separators=(",", ":"))
            out[position] = StreamEvent(t_ms=events[position].t_ms, line=text)
        return out

    def _redact_pieces(
        self, chunks: dict[int, dict[str, Any]], pieces: list[tuple[int, list[Any]]]
    ) -> set[int]:
        """Redact the secrets of one text assembled from `pieces` (chunk, path to a string);
        the chunks changed."""
        strings = [_get(chunks[position], path) for position, path in pieces]
        whole = "".join(strings)
        spans: list[tuple[int, int]] = []
        for form in self.forms:
            start = whole.find(form)
            while start >= 0:
                spans.append((start, start + len(form)))
                start = whole.find(form, start + len(form))
        if not spans:
            return set()
        changed: set[int] = set()
        offset = 0
        for (position, path), text in zip(pieces, strings, strict=True):
            begin, end = offset, offset + len(text)
            offset = end
            kept: list[str] = []
            for index, char in enumerate(text, start=begin):
                span = next((s for s in spans if s[0] <= index < s[1]), None)
                if span is None:
                    kept.append(char)
                elif index == span[0]:
                    kept.append(REDACTED)  # the rest of the secret's characters are dropped
            new = "".join(kept)
            if new != text:
                _set(chunks[position], path, new)
                changed.add(position)
        return changed

    def _event(self, event: StreamEvent) -> StreamEvent:
        line = event.line
        if line.startswith("data:"):
            payload = line[5:]
            cleaned = self.json_text(payload)
            return (
                event
                if cleaned is payload
                else StreamEvent(t_ms=event.t_ms, line="data:" + cleaned)
            )
        cleaned = self.text(line)
        return event if cleaned is line else StreamEvent(t_ms=event.t_ms, line=cleaned)


_DELTA_TEXT = ("content", "reasoning_content", "reasoning")


def _text_pieces(chunk: dict[str, Any]) -> list[tuple[tuple[Any, ...], list[Any]]]:
    """(which assembled text, path to the piece) of every text piece a chunk carries."""
    found: list[tuple[tuple[Any, ...], list[Any]]] = []
    choices = chunk.get("choices")
    for c, choice in enumerate(choices if isinstance(choices, list) else []):
        delta = choice.get("delta") if isinstance(choice, dict) else None
        if not isinstance(delta, dict):
            continue
        for name in _DELTA_TEXT:
            if isinstance(delta.get(name), str):
                found.append(((c, name), ["choices", c, "delta", name]))
        calls = delta.get("tool_calls")
        for t, call in enumerate(calls if isinstance(calls, list) else []):
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict) and isinstance(function.get("arguments"), str):
                index = call.get("index", t)
                path = ["choices", c, "delta", "tool_calls", t, "function", "arguments"]
                found.append(((c, "tool_calls", index), path))
    return found


def _get(value: Any, path: list[Any]) -> str:
    for step in path:
        value = value[step]
    return str(value)


def _set(value: Any, path: list[Any], text: str) -> None:
    for step in path[:-1]:
        value = value[step]
    value[path[-1]] = text


def redact_url(url: str) -> str:
    """The URL without credentials or query string, fit to be stored."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, "", ""))
