"""List filters and pages: the subset of GCE's ``filter`` syntax cloudnorm's clients
send, and ``orderBy``, ``maxResults`` and ``pageToken`` over a list of records."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from cloudnorm.testing.gce.common import invalid

_PAGE = 500
_TOKEN = re.compile(r'\s*(?:(\()|(\))|"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'|'
                    r'(!=|=|:)|([^\s()=!:"\']+))')


def _field(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def compile_filter(expression: str) -> Callable[[dict[str, Any]], bool]:
    """A predicate for GCE's ``filter``: ``field eq 'RE2'`` / ``field ne 'RE2'``, or
    comparisons ``field = value``, ``!=``, ``:`` (``*`` wildcards), parenthesized, joined by
    AND (or juxtaposition) and OR, with NOT."""
    text = expression.strip()
    regex = re.fullmatch(r"(\S+)\s+(eq|ne)\s+(.+)", text)
    if regex:
        field, op, value = regex.groups()
        value = value.strip()
        if len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        try:
            pattern = re.compile(value)
        except re.error as exc:
            raise invalid("filter", expression, f"Invalid regular expression: {exc}") from exc

        def matches(record: dict[str, Any]) -> bool:
            found = bool(pattern.fullmatch(str(_field(record, field) or "")))
            return found if op == "eq" else not found
        return matches

    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if not match or match.end() == position:
            raise invalid("filter", expression, "Invalid list filter expression.")
        position = match.end()
        opening, closing, dquoted, squoted, op, word = match.groups()
        if opening:
            tokens.append(("(", "("))
        elif closing:
            tokens.append((")", ")"))
        elif dquoted is not None or squoted is not None:
            tokens.append(("value", dquoted if dquoted is not None else squoted))
        elif op:
            tokens.append(("op", op))
        elif word:
            tokens.append(("word", word))
    index = 0

    def peek() -> tuple[str, str] | None:
        return tokens[index] if index < len(tokens) else None

    def take() -> tuple[str, str]:
        nonlocal index
        if index >= len(tokens):
            raise invalid("filter", expression, "Invalid list filter expression.")
        index += 1
        return tokens[index - 1]

    def comparison() -> Callable[[dict[str, Any]], bool]:
        kind, field = take()
        if kind != "word":
            raise invalid("filter", expression, "Invalid list filter expression.")
        kind, op = take()
        if kind != "op":
            raise invalid("filter", expression, "Invalid list filter expression.")
        kind, value = take()
        if kind not in ("word", "value"):
            raise invalid("filter", expression, "Invalid list filter expression.")

        def test(record: dict[str, Any]) -> bool:
            have = _field(record, field)
            if op == ":":
                if value == "*":
                    return have is not None
                pattern = re.escape(value).replace(r"\*", ".*")
                values = have if isinstance(have, list) else [have]
                return any(re.fullmatch(pattern, str(v)) for v in values if v is not None)
            if isinstance(have, bool):
                have = str(have).lower()
            equal = have is not None and str(have) == value
            return equal if op == "=" else not equal
        return test

    def atom() -> Callable[[dict[str, Any]], bool]:
        token = peek()
        if token == ("word", "NOT"):
            take()
            inner = atom()
            return lambda r: not inner(r)
        if token and token[0] == "(":
            take()
            inner = disjunction()
            if take()[0] != ")":
                raise invalid("filter", expression, "Invalid list filter expression.")
            return inner
        return comparison()

    def conjunction() -> Callable[[dict[str, Any]], bool]:
        parts = [atom()]
        while (token := peek()) is not None and token[0] != ")" and token != ("word", "OR"):
            if token == ("word", "AND"):
                take()
            parts.append(atom())
        return lambda r: all(p(r) for p in parts)

    def disjunction() -> Callable[[dict[str, Any]], bool]:
        parts = [conjunction()]
        while peek() == ("word", "OR"):
            take()
            parts.append(conjunction())
        return lambda r: any(p(r) for p in parts)

    predicate = disjunction()
    if index != len(tokens):
        raise invalid("filter", expression, "Invalid list filter expression.")
    return predicate


def page(items: list[dict[str, Any]], query: dict[str, str], kind: str,
         link: str) -> dict[str, Any]:
    if query.get("filter"):
        predicate = compile_filter(query["filter"])
        items = [i for i in items if predicate(i)]
    if query.get("orderBy"):
        field = query["orderBy"].split()[0]
        items = sorted(items, key=lambda i: str(_field(i, field) or ""),
                       reverse=query["orderBy"].endswith(" desc"))
    size = max(1, min(int(query.get("maxResults") or _PAGE), _PAGE))
    start = int(query.get("pageToken") or 0)
    reply: dict[str, Any] = {"kind": kind, "id": link, "items": items[start:start + size],
                             "selfLink": link}
    if start + size < len(items):
        reply["nextPageToken"] = str(start + size)
    return reply
