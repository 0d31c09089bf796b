"""Finding the API key in what a server sends back, however it is spelled.

A server may echo the key it was sent (a message quoting the request, a redirect carrying it, a
header, a body): it must never be archived, stored or shown. :func:`key_pattern` finds it
spelled character by character (as itself, percent-encoded, JSON-escaped) for replacing in
place; :func:`reveals` says whether a text gives it back to a reader who decodes it as people
do (escapes of every language, code points written ``U+006B`` or ``0x6b``, percent-encoding
twice, HTML entities twice, base64, base32, hex, Unicode forms, invisible characters, combining
marks, Cyrillic and Greek letters drawn as Latin ones, characters spelled apart by anything but
letters and digits, the key reversed behind a right-to-left override, which draws it as itself,
any case). A cipher is not a spelling: the key reversed (without an override), rot13, base64
twice, decimal codes or encrypted is not looked for (a server can always hide it from any check).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from functools import cache

__all__ = ["MIN_REDACTED_KEY", "base64_forms", "json_strings", "key_pattern", "reveals", "reveals_across"]

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
#: Characters written as their code points the ways languages write them: ``\u{6b}``,
#: ``\U0000006b``, octal ``\153``, Perl's ``\x{6b}``, Java's ``\uu006b``, JavaScript's ``%u006B``.
_CODES = re.compile(r"\\u\{([0-9a-fA-F]{1,6})\}|\\U([0-9a-fA-F]{8})|\\x\{([0-9a-fA-F]{1,6})\}"
                    r"|\\uu+([0-9a-fA-F]{4})|%[uU]([0-9a-fA-F]{4})|\\([0-9a-fA-F]{6})|\\([0-7]{3})")
#: Python's escapes by name: ``\N{LATIN SMALL LETTER K}``.
_NAMED = re.compile(r"\\N\{([A-Za-z0-9 \-]{1,80})\}")
#: ... and the ways people write them, ``U+006B``, ``0x6b``, ``0x0000006b`` (not inside a number:
#: ``100x100``; a key's characters are ASCII, two hex digits after any zeros, so ``0x6b0x62`` and
#: ``U+006B`` before a word that starts with a hex letter are read right).
_POINTS = re.compile(r"[uU]\+0{0,6}([0-9a-fA-F]{2})(?![0-9a-fA-F])|0[xX]0{0,6}([0-9a-fA-F]{2})(?:(?![0-9a-fA-F])|(?=0[xX]))")
#: The same, each led by its first characters (found fast in lower-cased text).
_HEX_POINT = re.compile(r"0x0{0,6}[0-9a-f]{2}(?:(?![0-9a-f])|(?=0x))")
_U_POINT = re.compile(r"u\+0{0,6}[0-9a-f]{2}(?![0-9a-f])")
#: Markup between a key's characters (``<span>k</span><span>b</span>``): a reader sees the text only.
_TAGS = re.compile(r"<[^<>]{0,200}>")
#: Letters of other scripts drawn as Latin ones (Cyrillic, Greek), as the Latin letter a reader sees.
_LOOK_ALIKES = str.maketrans(
    "\u0430\u0435\u043e\u0440\u0441\u0445\u0443\u0456\u0458\u0455\u0501\u04bb\u051b\u051d\u043a"
    "\u03b1\u03bf\u03c1\u03b9\u03ba\u03bd\u03c5\u03c7\u03c4\u03b5\u03f2\u03f3",
    "aeopcxyijsdhqwkaopikvuxtecj")
#: Combining marks (accents drawn on the character before), and the scripts of :data:`_LOOK_ALIKES`.
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
_DRAWN_AS_LATIN = re.compile("[\u0300-\u036f\u0370-\u052f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
@cache
def _apart_anywhere(bare: bytes) -> re.Pattern[str]:
    """What finds the key spelled apart by anything but letters and digits, in any script (minus
    signs, middle dots, katakana dots, emoji…): a search led by its first character."""
    return re.compile(f"{_APART_ANY}*".join(map(re.escape, bare.decode("utf-8", "replace"))))


#: Anything but letters and digits, and the letters drawn as dashes or lines (Arabic tatweel, the
#: katakana prolonged sound mark, the ideograph one).
_APART_ANY = "[\\W_\u0640\u30fc\uff70\u4e00\u2e3a\u2e3b]"


def base64_forms(key: str) -> tuple[str, ...]:
    """What an encoding of the key (or of ``Bearer key``) holds whatever the offset it starts at:
    the middles of its base64 (standard and URL-safe alphabets) and base32 (either case), and its
    hex (either case)."""
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
        for pad in range(5):
            encoded = base64.b32encode(b"\0" * pad + raw).decode()
            middle = encoded[8 if pad else 0: -8]
            if len(middle) >= 8:
                forms.update((middle, middle.lower()))
        forms.update((raw.hex(), raw.hex().upper()))
        utf16 = text.encode("utf-16-be").hex()  # (each character as four hex digits: 006b0062…, or 006B 0062 …)
        forms.update((utf16, utf16.upper()))
    return tuple(forms)


#: What a reader skips between the characters of a key spelled apart (``s k - l i v e``,
#: ``s-k---l-i-v-e``): any ASCII character but letters and digits (others, such as a no-break
#: space or a fullwidth dash, are made ASCII by the Unicode forms looked at).
_APART = bytes(c for c in range(128) if not chr(c).isalnum())


#: (as UTF-8: Latin-1's spaces and signs, U+00A0–U+00BF; general punctuation, U+2000–U+203F,
#: dashes, bullets and spaces; ideographic space and marks, U+3000–U+3003)
_APART_WIDE = re.compile(rb"\xc2[\xa0-\xbf]|\xe2\x80[\x80-\xbf]|\xe3\x80[\x80-\x83]")


def _apart(text: str) -> bytes:
    """``text`` lower-cased, as UTF-8 without its spaces, punctuation, dashes and bullets."""
    return _flat(text.lower())


def _flat(lowered: str) -> bytes:
    """:func:`_apart` of text lower-cased already."""
    data = lowered.encode("utf-8", "surrogatepass").translate(None, _APART)
    return _APART_WIDE.sub(b"", data) if b"\xc2" in data or b"\xe2" in data or b"\xe3" in data else data


@cache
def _apart_forms(b64: tuple[str, ...]) -> tuple[bytes, ...]:
    """The encoded forms as :func:`_apart` leaves them (an encoding broken across lines, hex
    written with colons or spaces between its bytes)."""
    return tuple(form for form in {_apart(f) for f in b64} if len(form) >= 8)


def reveals(text: str, key: str, b64: tuple[str, ...]) -> bool:
    """Whether ``text`` gives ``key`` (lower-cased) back to a reader who decodes it; ``b64`` are
    :func:`base64_forms` of the key."""
    import html
    import unicodedata
    from urllib.parse import unquote

    if len(text) < len(key):  # (every spelling of the key is at least as long as the key)
        return False
    lowered = text.lower()
    if key in lowered or any(form in text for form in b64):
        return True
    bare = _apart(key)
    flat = _flat(lowered)
    if (len(bare) >= 8 and bare in flat) or any(form in flat for form in _apart_forms(b64)):
        return True  # (spelled apart: spaces, dashes, dots, line breaks between its characters)
    if text.isascii() and "%" not in text and "&" not in text and "\\" not in text and "<" not in text \
            and not _points_in(lowered):
        return False
    candidates = [text]
    lowers = {id(text): lowered}

    def decoded(c: str) -> None:  # (a decoding that changes nothing is the text looked at already)
        if all(c != held for held in candidates):
            candidates.append(c)

    def lower(c: str) -> str:  # (each candidate lower-cased once)
        low = lowers.get(id(c))
        if low is None:
            low = lowers[id(c)] = c.lower()
        return low

    done, normalised = 0, set[int]()
    for _ in range(3):  # (each decoding of each decoding: percent-encoded escapes, entities encoded twice, fullwidth escapes escaped)
        fresh, done = candidates[done:], len(candidates)
        for c in fresh:
            if not c.isascii() and id(c) not in normalised and (
                    not unicodedata.is_normalized("NFKC", c) or _INVISIBLE.search(c)):
                # (fullwidth escapes, ＼ｕ００６ｂ, ％６Ｂ, are decoded once made ASCII)
                normalised.add(id(c))
                held = len(candidates)
                decoded(_INVISIBLE.sub("", unicodedata.normalize("NFKC", c)))
                if len(candidates) > held:
                    normalised.add(id(candidates[-1]))  # (normalised already)
                    if any(form in candidates[-1] for form in b64):  # (base64, hex, in fullwidth letters)
                        return True
            if "\\" in c or "%u" in c or "%U" in c:  # (escapes a reader would decode again: \u0073, \x73, \/, \u{73}, \163)
                decoded(_ESCAPES.sub(_escaped, c))
                decoded(_CODES.sub(_coded, c))
                if "\\N{" in c:
                    decoded(_NAMED.sub(_named, c))
            low = lower(c)
            if ("0x" in low or "u+" in low) and _points_in(low):
                decoded(_POINTS.sub(_coded, c))
            if "%" in c:
                once = unquote(c)
                decoded(once)
                decoded(unquote(once))
            if "&" in c:
                decoded(html.unescape(c))
            if "</" in c:  # (markup closes its elements: <span>k</span>)
                decoded(_TAGS.sub("", c))
    for c in list(candidates):
        # combining marks on every character (ḱ), letters of other scripts drawn as Latin ones
        if not c.isascii() and _DRAWN_AS_LATIN.search(c):
            bared = _COMBINING.sub("", unicodedata.normalize("NFKD", c))
            decoded(bared.lower().translate(_LOOK_ALIKES))
    for i, c in enumerate(candidates):
        low = lower(c)
        if i and (key in low or (len(bare) >= 8 and bare in _flat(low))):  # (the text itself: looked at above)
            return True
        if not low.isascii() and len(bare) >= 8 and _apart_anywhere(bare).search(low):
            return True
        # drawn right to left (an override, however it was written): the key reversed reads as the key
        if ("\u202e" in c or "\u202d" in c or "\u2067" in c) and (
                key[::-1] in low or (len(bare) >= 8 and bare[::-1] in _flat(low))):
            return True
    return False


def _escaped(m: re.Match[str]) -> str:
    return chr(int(m.group(1) or m.group(2), 16)) if m.group(1) or m.group(2) else m.group(3)


def _points_in(lowered: str) -> bool:
    """Whether text (lower-cased) holds a code point written ``U+006B`` or ``0x6b``, not in a number
    (``640x48``)."""
    return any(_word_apart(m) for pattern in (_HEX_POINT, _U_POINT) for m in pattern.finditer(lowered))


def _word_apart(m: re.Match[str]) -> bool:
    """Whether what :data:`_POINTS` found follows no digit (``0x6b``, not the ``0x48`` of ``640x48``),
    or follows another code point (``0x620x5f``)."""
    at = m.start()
    return at == 0 or not m.string[at - 1].isdigit() or _POINT_BEFORE.search(m.string, max(0, at - 10), at) is not None


#: A code point written ``0x62`` right before (``0x620x5f``: the second follows a digit, and is one too).
_POINT_BEFORE = re.compile(r"0[xX]0{0,6}[0-9a-fA-F]{2}$")


def _named(m: re.Match[str]) -> str:
    import unicodedata

    try:
        return unicodedata.lookup(m.group(1))
    except KeyError:
        return m.group(0)


def _coded(m: re.Match[str]) -> str:
    """One code point :data:`_CODES` or :data:`_POINTS` found, as the character (one out of range,
    or inside a word: as written)."""
    if m.re is _POINTS and not _word_apart(m):
        return m.group(0)
    *hexed, octal = m.groups() if m.re is _CODES else (*m.groups(), None)
    digits = next((h for h in hexed if h), None)
    code = int(digits, 16) if digits else int(octal or "0", 8)
    return chr(code) if code < 0x110000 and not 0xD800 <= code < 0xE000 else m.group(0)


_JSON_STRING = re.compile(r'("[^"\\]*(?:\\.[^"\\]*)*")', re.DOTALL)
#: What JSON holds outside its strings: structure, numbers, ``true``, ``false``, ``null``.
_JSON_OUTSIDE = re.compile(r"[\s{}\[\]:,0-9eE.+\-truefalsn]*")


def json_strings(text: str, odd: list[bool]) -> Iterator[str]:
    """The strings of the JSON ``text`` (keys included) in document order, decoded, each ended by a
    line break (a code point a string ends with is not read on into the next: ``U+006B`` then
    ``duration`` is not ``U+006BD``; a key split across strings is still seen spelled apart),
    read from its text a part at a time without building the document (joined, they are what
    follows from each part); ``odd`` gets ``True`` appended when the text outside them is not
    what JSON holds there (no JSON: its strings are not all it says).

    >>> odd = []; "".join(json_strings('{"a\\u0062": [1, "", "c"]}', odd)), odd
    ('ab\\n\\nc\\n', [])
    >>> odd = []; "".join(json_strings('{"a": sk-1}', odd)), odd
    ('a\\n', [True])
    """
    import json

    at, size = 0, _PART
    while at < len(text):
        end = min(len(text), at + size)
        parts = _JSON_STRING.split(text[at:end])  # (outside, string, outside, …, outside)
        last = parts[-1]
        cut = last.find('"')  # a string the part ends in the middle of: read again with the next
        if cut >= 0 and end < len(text):
            consumed = end - at - len(last) + cut
            if consumed == 0:  # (one string longer than a part: a larger part)
                size *= 2
                continue
            parts[-1] = last[:cut]
        else:
            consumed = end - at
        if not _JSON_OUTSIDE.fullmatch("".join(parts[0::2])):
            odd.append(True)
        tokens = parts[1::2]
        if any("\\" in token for token in tokens):
            try:  # (decoded together: one call for the part)
                yield "\n".join(json.loads("[" + ",".join(tokens) + "]")) + "\n"
            except ValueError:  # (an escape JSON has not, or a control character: no JSON)
                odd.append(True)
                yield "\n".join(tokens) + "\n"
        elif tokens:
            yield "".join(tokens)[1:-1].replace('""', "\n") + "\n"  # (each string's quotes: between two, a line break)
        at += consumed
        size = _PART


#: Text :func:`reveals_across` looks at at once, and what it looks at again of the part before:
#: a spelling of the key longer than that (each character spelled in 2,000) is not seen across.
_PART = 1 << 20
_OVERLAP = 1 << 16


def reveals_across(texts: Iterable[str], key: str, b64: tuple[str, ...]) -> bool:
    """:func:`reveals` of ``texts`` joined, looked at a part at a time: an answer of megabytes
    whose text lies outside ASCII (emoji) is never decoded whole, four bytes a character in each
    of the forms :func:`reveals` reads it in."""
    held: list[str] = []
    size = 0
    tail = ""
    for text in texts:
        for i in range(0, len(text), _PART) if len(text) > _PART else (0,):
            piece = text[i:i + _PART] if len(text) > _PART else text
            held.append(piece)
            size += len(piece)
            if size >= _PART:
                part = tail + "".join(held)
                if reveals(part, key, b64):
                    return True
                tail, held, size = part[-_OVERLAP:], [], 0
    return reveals(tail + "".join(held), key, b64) if held else False
