"""Finding the API key in what a server sends back, however it is spelled.

A server may echo the key it was sent (a message quoting the request, a redirect carrying it, a
header, a body): it must never be archived, stored or shown. :func:`key_pattern` finds it
spelled character by character (as itself, percent-encoded, JSON-escaped) for replacing in
place; :func:`reveals` says whether a text gives it back to a reader who decodes it as people
do (escapes, percent-encoding twice, HTML entities, base64, Unicode forms, invisible
characters, any case).
"""

from __future__ import annotations

import re

__all__ = ["MIN_REDACTED_KEY", "base64_forms", "key_pattern", "reveals"]

#: Keys shorter than this are not looked for in answers: they would match ordinary text (a key
#: ``k`` would turn every ``k`` of an answer into ``REDACTED``); no real key is this short.
MIN_REDACTED_KEY = 8


def key_pattern(key: str) -> re.Pattern[str] | None:
    r"""What finds ``key`` in text however it is spelled: each character as itself, percent-encoded
    (either case of hex digits, ``+`` for a space) or as a JSON escape (``\u0053``, ``\/``).

    >>> key_pattern("sk-12345/x").sub("REDACTED", r'a "\u0073k-12345\/x" b %73k%2D12345%2Fx c')
    'a "REDACTED" b REDACTED c'
    >>> key_pattern("k") is None
    True
    """
    if len(key) < MIN_REDACTED_KEY:
        return None

    def hexed(text: str) -> str:
        return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else c for c in text)

    parts = []
    for ch in key:
        forms = [re.escape(ch), "".join(f"%{hexed(f'{b:02x}')}" for b in ch.encode("utf-8"))]
        if ord(ch) < 0x10000:
            forms.append(r"\\u" + hexed(f"{ord(ch):04x}"))
        if ch in '/"\\':
            forms.append(re.escape("\\" + ch))
        if ch == " ":
            forms.append(r"\+")
        parts.append("(?:" + "|".join(forms) + ")")
    return re.compile("".join(parts))


_INVISIBLE = re.compile("[\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f\u202a-\u202e"
                        "\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\U000e0000-\U000e0fff]")


_ESCAPES = re.compile(r"\\u([0-9a-fA-F]{4})|\\x([0-9a-fA-F]{2})|\\([/\\\"'])")


def base64_forms(key: str) -> tuple[str, ...]:
    """What base64 of the key (or of ``Bearer key``) holds whatever the offset it starts at:
    the encodings' middles, standard and URL-safe alphabets."""
    import base64

    forms = set()
    for text in (key, f"Bearer {key}"):
        raw = text.encode()
        for pad in range(3):
            encoded = base64.b64encode(b"\0" * pad + raw).decode()
            middle = encoded[4 if pad else 0: -4]  # (the first and last groups depend on what is around)
            if len(middle) >= 8:
                forms.add(middle)
                forms.add(middle.replace("+", "-").replace("/", "_"))
    return tuple(forms)


def reveals(text: str, key: str, b64: tuple[str, ...]) -> bool:
    """Whether ``text`` gives ``key`` (lower-cased) back to a reader who decodes it; ``b64`` are
    :func:`base64_forms` of the key."""
    import html
    import unicodedata
    from urllib.parse import unquote

    if len(text) < len(key):  # (every spelling of the key is at least as long as the key)
        return False
    if key in text.lower() or any(form in text for form in b64):
        return True
    if text.isascii() and "%" not in text and "&" not in text and "\\" not in text:
        return False
    candidates = [text]
    if "\\" in text:  # (escapes a reader would decode again: \u0073, \x73, \/)
        candidates.append(_ESCAPES.sub(lambda m: chr(int(m.group(1) or m.group(2), 16)) if m.group(1) or m.group(2)
                                       else m.group(3), text))
    for c in list(candidates):
        if "%" in c:
            candidates += [unquote(c), unquote(unquote(c))]
    for c in list(candidates):
        if "&" in c:
            candidates.append(html.unescape(c))
    for c in list(candidates):
        if not c.isascii():
            candidates.append(_INVISIBLE.sub("", unicodedata.normalize("NFKC", c)))
    return any(key in c.lower() for c in candidates)


