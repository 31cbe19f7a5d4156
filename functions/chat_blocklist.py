"""Find blocked words in chat text, through the usual evasions, without Scunthorpe mistakes.

Word-boundary policy (the Scunthorpe problem):
* A plain entry ("bad") matches a *whole word* only, optionally followed by one of a few
  inflection suffixes (`DEFAULT_SUFFIXES`: "bads", "badder"). So "ass" does not match "class",
  "assassin" or "grass", and "cunt" does not match "Scunthorpe".
* "word*" matches words that start with it ("fuck*" → "fuckwit"), "*word" words that end with
  it, and "*word*" the letters anywhere inside a word. Use those only for terms that never occur
  inside innocent words.
* Numbers are numbers: a part made only of digits is never read as leetspeak ("455 points"),
  but one digit among letters is ("b4d").

Evasions spanning several characters, on top of the per-character folding in `chat_fold`:
* inserted punctuation: a word is split at punctuation into parts, and each part *and* the
  parts joined are tried ("b.a.d", "b*a*d", "hello,bad");
* inserted spaces: two or more consecutive one-letter words are joined and searched ("b a d",
  "b. a. d.", "I a m b a d" finds "bad"). That is the one place a blocked word is found across
  word boundaries; a run of single letters is rare in honest chat;
* repeated letters: each letter of an entry matches one or more copies ("baaaad"), so double
  letters still need two ("ass" needs "ss": "as" is not hit); runs longer than three are cut to
  three first, which also bounds the regex work on hostile input ("a" * 4000);
* leet symbols that are also punctuation ("bad!", "$hit") are tried both ways at word edges.

Speed (moderate must take >= 5,000 msg/s per instance): before any per-character work, a message and
then each of its words must contain, for some entry, that entry's first and last letter pair
(`suspicious`); ordinary chat fails that test in a few substring searches. The test is a
necessary condition for a match, so it never hides one (tests check this with hypothesis).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from chat_fold import (
    AMBIGUOUS_IL,
    DIGIT,
    IGNORE,
    PUNCT,
    SPACE,
    SPACED_WITH_SYMBOLS,
    SPACED_WITHOUT_SYMBOLS,
    SYMBOL,
    fold_char,
)

DEFAULT_SUFFIXES: tuple[str, ...] = ("s", "es", "ed", "er", "ers", "ing", "z")
MAX_RUN = 3  # identical letters kept in a row before matching
MAX_WORD = 128  # folded letters; longer "words" are only searched by *infix* entries
RULE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
_WORD = re.compile(r"\S+")  # \s is str.isspace(), as chat_fold's SPACE
# Two or more one-letter words in a folded, space-separated message ("b a d").
_ONE_LETTER_RUN = re.compile(r"(?<![^ ])[^ ](?![^ ])(?: +[^ ](?![^ ]))+")


class BlocklistError(ValueError):
    """The configured blocklist cannot be used; the message names the entry."""


@dataclass(frozen=True)
class Hit:
    rule: str
    entry: str  # as configured, for the verdict's reason
    first: int  # index of the first and last character of the match in the original text
    last: int


@dataclass(frozen=True)
class _Entry:
    rule: str
    text: str
    core: str  # regex for the folded letters
    mode: str  # "word", "prefix", "suffix" or "infix"
    grams: tuple[str, str]  # letters any match must contain (see `_prefilter_grams`)


@dataclass
class _Candidate:
    skeleton: str
    index: list[int]  # original index of each skeleton letter
    spaced: bool  # a run of one-letter words: searched, not matched whole


def letter_class(letter: str) -> str:
    """The regex for one folded letter; i and l also accept the ambiguous 1/!/| marker."""
    if letter in ("i", "l"):
        return f"[{letter}{AMBIGUOUS_IL}]"
    return re.escape(letter)


def letters_pattern(letters: str) -> str:
    """Each run of equal letters becomes `x{n,}` (n capped at MAX_RUN): 'ass' → a{1,}s{2,}."""
    out: list[str] = []
    i = 0
    while i < len(letters):
        j = i
        while j < len(letters) and letters[j] == letters[i]:
            j += 1
        out.append(f"{letter_class(letters[i])}{{{min(j - i, MAX_RUN)},}}")
        i = j
    return "".join(out)


def _prefilter_grams(letters: str) -> tuple[str, str]:
    """Two strings every match of `letters` contains, whatever the repeats: with i, l and the
    1/!/| marker merged (all may read as each other) and runs collapsed, the first and last pair
    of adjacent letters ("bullshit" → "bu", "it"); a one-letter entry gives that letter twice."""
    merged = letters.replace("l", "i").replace(AMBIGUOUS_IL, "i")
    collapsed = "".join(c for n, c in enumerate(merged) if n == 0 or c != merged[n - 1])
    if len(collapsed) == 1:
        return (collapsed, collapsed)
    return (collapsed[:2], collapsed[-2:])


def fold_entry(raw: str) -> str:
    """The folded letters of a configured entry (same folding as the text), or raise."""
    letters: list[str] = []
    for ch in raw:
        folded = fold_char(ch)
        if folded.kind in (SPACE, PUNCT):
            raise BlocklistError(f"blocklist entry {raw!r}: only letters are allowed (one word, no spaces)")
        letters.append(folded.letters)
    result = "".join(letters)
    if not result:
        raise BlocklistError(f"blocklist entry {raw!r} has no letters")
    return result


class Blocklist:
    """Compiled blocklist. `scan(text)` returns every hit with its span in `text`."""

    def __init__(self, rules: Mapping[str, Sequence[str]], suffixes: Sequence[str] = DEFAULT_SUFFIXES) -> None:
        entries: list[_Entry] = []
        for rule, words in rules.items():
            if not isinstance(rule, str) or not RULE_NAME.fullmatch(rule):
                raise BlocklistError(f"blocklist rule name {rule!r} must match {RULE_NAME.pattern}")
            if isinstance(words, str) or not isinstance(words, Sequence):
                raise BlocklistError(f"blocklist rule {rule!r} must be a list of words")
            for raw in words:
                if not isinstance(raw, str):
                    raise BlocklistError(f"blocklist rule {rule!r}: entry {raw!r} is not a string")
                lead, trail = raw.startswith("*"), raw.endswith("*") and len(raw) > 1
                mode = {(False, False): "word", (False, True): "prefix", (True, False): "suffix",
                        (True, True): "infix"}[(lead, trail)]  # fmt: skip
                letters = fold_entry(raw.strip("*"))
                entries.append(_Entry(rule, raw, letters_pattern(letters), mode, _prefilter_grams(letters)))
        self._entries = entries
        suffix_re = "|".join(letters_pattern(fold_entry(s)) for s in suffixes)
        optional_suffix = f"(?:{suffix_re})?" if suffixes else ""
        whole: list[str] = []
        searched: list[str] = []
        spaced: list[str] = []
        for n, e in enumerate(entries):
            group = f"g{n}"
            if e.mode == "word":
                whole.append(f"(?P<{group}>{e.core}{optional_suffix})")
            elif e.mode == "prefix":
                whole.append(f"(?P<{group}>{e.core}.*)")
            elif e.mode == "suffix":
                searched.append(f"(?P<{group}>{e.core}$)")
            else:
                searched.append(f"(?P<{group}>{e.core})")
            spaced.append(f"(?P<{group}>{e.core}{optional_suffix if e.mode == 'word' else ''})")
        self._grams = tuple(e.grams for e in entries)
        self._whole = re.compile("|".join(whole)) if whole else None
        self._searched = re.compile("|".join(searched)) if searched else None
        self._spaced = re.compile("|".join(spaced)) if spaced else None

    def __len__(self) -> int:
        return len(self._entries)

    # Every match contains an entry's letters, and every candidate word is either a stretch of
    # one whitespace-separated word's folded letters (separators, maybe leet symbols, left out)
    # or a run of one-letter words. So a stretch of letters without an entry's letter pairs
    # cannot hit: most chat is cleared by a few substring tests instead of the per-character
    # tokenizer and the regexes.
    def suspicious(self, letters: str) -> bool:
        """False when no entry can match in these folded letters (a necessary condition)."""
        merged = letters.replace("l", "i").replace(AMBIGUOUS_IL, "i")
        for first, last in self._grams:  # a plain loop: this runs for every word of every message
            if first in merged and last in merged:
                return True
        return False

    def could_hit(self, text: str) -> bool:
        """False when no entry can match anywhere in `text`."""
        if not self._grams:
            return False
        spaced = text.translate(SPACED_WITH_SYMBOLS)
        if self.suspicious(spaced) or self.suspicious(text.translate(SPACED_WITHOUT_SYMBOLS)):
            return True
        return any(self.suspicious(run.group().replace(" ", "")) for run in _ONE_LETTER_RUN.finditer(spaced))

    def scan(self, text: str) -> list[Hit]:
        if not self.could_hit(text):
            return []
        hits: dict[tuple[str, int, int], Hit] = {}
        for cand in _candidates(text, self.suspicious):
            for entry, start, end in self._match(cand):
                hit = Hit(entry.rule, entry.text, cand.index[start], cand.index[end - 1])
                hits.setdefault((hit.rule, hit.first, hit.last), hit)
        return sorted(hits.values(), key=lambda h: (h.first, h.rule))

    def _match(self, cand: _Candidate) -> Iterator[tuple[_Entry, int, int]]:
        skeleton = cand.skeleton
        if cand.spaced:
            if self._spaced is not None:
                for m in self._spaced.finditer(skeleton):
                    yield self._entries[int(m.lastgroup[1:])], m.start(), m.end()  # type: ignore[index]  # every alternative is a named group, so lastgroup is set
            return
        if self._whole is not None and len(skeleton) <= MAX_WORD:
            whole = self._whole.fullmatch(skeleton)
            if whole is not None:
                yield self._entries[int(whole.lastgroup[1:])], 0, len(skeleton)  # type: ignore[index]  # every alternative is a named group, so lastgroup is set
        if self._searched is not None:
            for m in self._searched.finditer(skeleton):
                yield self._entries[int(m.lastgroup[1:])], m.start(), m.end()  # type: ignore[index]  # every alternative is a named group, so lastgroup is set


# --- tokenizing -------------------------------------------------------------------------------

_Glyph = tuple[int, int, str]  # (original index, kind, folded letters)


def _build(glyphs: Sequence[_Glyph], spaced: bool = False) -> _Candidate:
    skeleton: list[str] = []
    index: list[int] = []
    run_letter, run_len = "", 0
    for pos, _kind, letters in glyphs:
        for letter in letters:
            if letter == run_letter:
                run_len += 1
                if run_len > MAX_RUN:
                    index[-1] = pos  # the kept copy now ends here, so masking covers the run
                    continue
            else:
                run_letter, run_len = letter, 1
            skeleton.append(letter)
            index.append(pos)
    return _Candidate("".join(skeleton), index, spaced)


def _edge_variants(part: Sequence[_Glyph]) -> Iterator[Sequence[_Glyph]]:
    """The part, the part without leet symbols at its edges ("bad!" → "bad", "$hit" kept), and
    without symbols inside when they may be separators ("b|a|d", "b!a!d")."""
    yield part
    lo, hi = 0, len(part)
    while lo < hi and part[lo][1] == SYMBOL:
        lo += 1
    while hi > lo and part[hi - 1][1] == SYMBOL:
        hi -= 1
    if any(kind == SYMBOL for _pos, kind, _letters in part[lo:hi]):
        yield [g for g in part[lo:hi] if g[1] != SYMBOL]
    if (lo, hi) == (0, len(part)) or lo == hi:
        return
    if lo:
        yield part[lo:]
    if hi < len(part):
        yield part[:hi]
        if lo:
            yield part[lo:hi]


def _worth_matching(glyphs: Sequence[_Glyph]) -> bool:
    return any(kind != DIGIT for _pos, kind, _letters in glyphs)


def _glyphs(token: str, offset: int) -> list[_Glyph]:
    out: list[_Glyph] = []
    for i, ch in enumerate(token):
        folded = fold_char(ch)
        if folded.kind != IGNORE:
            out.append((offset + i, folded.kind, folded.letters))
    return out


def _word_candidates(glyphs: list[_Glyph]) -> Iterator[_Candidate]:
    parts: list[list[_Glyph]] = [[]]
    for glyph in glyphs:
        if glyph[1] == PUNCT:
            if parts[-1]:
                parts.append([])
        else:
            parts[-1].append(glyph)
    if not parts[-1]:
        parts.pop()
    for part in parts:
        if _worth_matching(part):
            for variant in _edge_variants(part):
                yield _build(variant)
    if len(parts) >= 2:
        joined = [g for part in parts for g in part]
        if _worth_matching(joined):
            for variant in _edge_variants(joined):
                yield _build(variant)


def _candidates(text: str, suspicious: Callable[[str], bool]) -> Iterator[_Candidate]:
    """Candidate words of `text`; only words (and one-letter runs) whose folded letters are
    `suspicious` are taken apart character by character."""
    run: list[_Glyph] = []  # consecutive one-letter words
    for m in _WORD.finditer(text):
        token = m.group()
        letters = token.translate(SPACED_WITH_SYMBOLS)
        if not letters:
            continue  # a word of punctuation only ("-") does not break a run
        glyphs: list[_Glyph] | None = None
        if suspicious(letters) or suspicious(token.translate(SPACED_WITHOUT_SYMBOLS)):
            glyphs = _glyphs(token, m.start())
            yield from _word_candidates(glyphs)
        if len(letters) == 1:  # one letter after folding ("b", "b.", "@"); "æ" folds to two
            glyphs = glyphs if glyphs is not None else _glyphs(token, m.start())
            run.append(next(g for g in glyphs if g[2]))
            continue
        if len(run) >= 2 and _worth_matching(run) and suspicious("".join(g[2] for g in run)):
            yield _build(run, spaced=True)
        run = []
    if len(run) >= 2 and _worth_matching(run) and suspicious("".join(g[2] for g in run)):
        yield _build(run, spaced=True)


__all__ = ["Blocklist", "BlocklistError", "DEFAULT_SUFFIXES", "Hit", "fold_entry"]
