"""Fold one character of chat text to the plain letters a blocklist is written in.

Evasions this undoes, per character (see `chat_blocklist` for the ones that span characters):
* case and diacritics: NFKD, drop combining marks, casefold ("BÄD" → "bad");
* compatibility forms: NFKD already maps fullwidth (U+FF21…), mathematical and circled letters
  to ASCII ("Ｂａｄ", "𝐛𝐚𝐝" → "bad");
* homoglyphs: Cyrillic and Greek letters that look Latin ("bаd" with a Cyrillic а);
* leetspeak: digits and symbols standing for letters ("b4d", "@ss", "$hit").

A folded character has a kind that tells the tokenizer how to treat it: whitespace separates
words, punctuation splits a word into parts, ignorable characters (zero-width joiners, soft
hyphens, stray combining marks) vanish, and the rest contribute letters.
"""

from __future__ import annotations

import unicodedata
from typing import NamedTuple

SPACE = 0  # separates words
PUNCT = 1  # splits a word into parts ("b.a.d")
IGNORE = 2  # dropped entirely (U+200B, U+00AD, lone combining marks)
LETTER = 3  # a letter after folding
DIGIT = 4  # a digit that is also a leet letter ("4" → a); a number of only digits is left alone
SYMBOL = 5  # a symbol that is also a leet letter ("@", "$", "!"); may also be plain punctuation

# '1', '!' and '|' read as either i or l; they fold to this marker, which the blocklist patterns
# accept in place of both letters (chat_blocklist.letter_class).
AMBIGUOUS_IL = "1"

LEET_DIGITS: dict[str, str] = {
    "0": "o",
    "1": AMBIGUOUS_IL,
    "3": "e",
    "4": "a",
    "5": "s",
    "6": "g",
    "7": "t",
    "8": "b",
    "9": "g",
}
LEET_SYMBOLS: dict[str, str] = {
    "@": "a",
    "$": "s",
    "!": AMBIGUOUS_IL,
    "|": AMBIGUOUS_IL,
    "+": "t",
    "€": "e",
    "£": "l",
    "¢": "c",
}

# Capital forms whose lowercase looks different (Greek Η looks like H, η like n), so they are
# mapped before casefolding.
UPPER_HOMOGLYPHS: dict[str, str] = {
    "Α": "a", "Β": "b", "Ε": "e", "Ζ": "z", "Η": "h", "Ι": "i", "Κ": "k", "Μ": "m", "Ν": "n",
    "Ο": "o", "Ρ": "p", "Τ": "t", "Υ": "y", "Χ": "x",
    "В": "b", "Н": "h", "М": "m", "Т": "t", "К": "k",
}  # fmt: skip

# Lowercase (already casefolded) look-alikes from Cyrillic, Greek, IPA and Latin letters that
# NFKD does not decompose.
LOWER_HOMOGLYPHS: dict[str, str] = {
    # Cyrillic
    "а": "a", "в": "b", "с": "c", "ԁ": "d", "е": "e", "һ": "h", "і": "i", "ј": "j", "к": "k",
    "ӏ": "l", "м": "m", "н": "h", "о": "o", "р": "p", "ԛ": "q", "г": "r", "ѕ": "s", "т": "t",
    "у": "y", "ѵ": "v", "ԝ": "w", "х": "x", "ь": "b", "ү": "y", "з": "3",
    # Greek
    "α": "a", "β": "b", "ε": "e", "η": "n", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
    "τ": "t", "υ": "u", "χ": "x", "ω": "w", "μ": "u", "ς": "s", "σ": "o",
    # IPA, small capitals and Latin letters with strokes
    "ɑ": "a", "ɡ": "g", "ɩ": "i", "ı": "i", "ȷ": "j", "ł": "l", "ø": "o", "đ": "d", "ħ": "h",
    "ŧ": "t", "ƀ": "b", "ᴀ": "a", "ʙ": "b", "ᴄ": "c", "ᴅ": "d", "ᴇ": "e", "ɢ": "g", "ʜ": "h",
    "ɪ": "i", "ᴊ": "j", "ᴋ": "k", "ʟ": "l", "ᴍ": "m", "ɴ": "n", "ᴏ": "o", "ᴘ": "p", "ʀ": "r",
    "ꜱ": "s", "ᴛ": "t", "ᴜ": "u", "ᴠ": "v", "ᴡ": "w", "ʏ": "y", "ᴢ": "z", "æ": "ae", "œ": "oe",
}  # fmt: skip


class Folded(NamedTuple):
    kind: int
    letters: str  # what the character contributes to a word's skeleton ("" for SPACE/PUNCT/IGNORE)


def _fold_uncached(ch: str) -> Folded:
    if ch.isspace():
        return Folded(SPACE, "")
    category = unicodedata.category(ch)
    if category == "Cf" or category.startswith("M") or category == "Cc":
        return Folded(IGNORE, "")
    if ch in UPPER_HOMOGLYPHS:
        return Folded(LETTER, UPPER_HOMOGLYPHS[ch])
    if ch in LEET_SYMBOLS:
        return Folded(SYMBOL, LEET_SYMBOLS[ch])
    base = "".join(c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c))
    out: list[str] = []
    kinds: set[int] = set()
    for c in base.casefold():
        if c in LEET_DIGITS:
            out.append(LEET_DIGITS[c])
            kinds.add(DIGIT)
        elif c in LEET_SYMBOLS:  # e.g. fullwidth ＠ decomposes to @
            out.append(LEET_SYMBOLS[c])
            kinds.add(SYMBOL)
        elif c.isdigit():  # digits that stand for no letter ("2") stay digits
            out.append(c)
            kinds.add(DIGIT)
        elif c.isalnum():
            mapped = LOWER_HOMOGLYPHS.get(c, c)
            out.append(LEET_DIGITS.get(mapped, mapped))  # Cyrillic з is a 3, hence an e
            kinds.add(LETTER)
    if not out:
        return Folded(PUNCT, "")
    if LETTER in kinds:
        return Folded(LETTER, "".join(out))
    if SYMBOL in kinds:
        return Folded(SYMBOL, "".join(out))
    return Folded(DIGIT, "".join(out))


_CACHE: dict[str, Folded] = {}
_CACHE_LIMIT = 65536  # distinct characters; chat uses far fewer, this only bounds hostile input


def fold_char(ch: str) -> Folded:
    """The kind and letters of one character (memoised: chat reuses a small alphabet)."""
    folded = _CACHE.get(ch)
    if folded is None:
        folded = _fold_uncached(ch)
        if len(_CACHE) < _CACHE_LIMIT:
            _CACHE[ch] = folded
    return folded




class _LettersTable(dict[int, str | None]):
    """`str.translate` table: each character to its folded letters, or deleted when it has none.

    Filled lazily (translate looks characters up one by one, `__missing__` folds new ones), so
    one C-level call folds a whole message. `keep_symbols=False` also deletes leet symbols;
    `spaces=True` turns whitespace into ' ' instead of deleting it."""

    def __init__(self, *, keep_symbols: bool, spaces: bool) -> None:
        super().__init__()
        self.keep_symbols = keep_symbols
        self.spaces = spaces

    def __missing__(self, code: int) -> str | None:
        folded = fold_char(chr(code))
        if folded.kind == SPACE:
            value = " " if self.spaces else None
        elif folded.kind == SYMBOL and not self.keep_symbols:
            value = None
        else:
            value = folded.letters or None
        if len(self) < _CACHE_LIMIT:
            self[code] = value
        return value


SPACED_WITH_SYMBOLS = _LettersTable(keep_symbols=True, spaces=True)
SPACED_WITHOUT_SYMBOLS = _LettersTable(keep_symbols=False, spaces=True)
LETTERS_ONLY = _LettersTable(keep_symbols=False, spaces=False)


def fold_text(text: str) -> str:
    """Letters and digits of `text`, folded; spaces, punctuation and leet symbols dropped
    (for duplicate detection: "Buy now!!" and "buy NOW" fold alike)."""
    return text.translate(LETTERS_ONLY)

