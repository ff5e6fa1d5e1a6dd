"""The form of classical Chinese poems, measured: verse lengths, and whether a poem keeps the form
its first verse sets.

A verse (句) is the run of characters between punctuation marks; a regular poem (jintishi) has
verses of one length, 5 or 7 characters, four of them (jueju) or eight (lüshi). A generated poem
"keeps its form" when every verse has its first verse's length and the count is 4 or 8.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Iterable

VERSE_END = re.compile(r"[，。？！；：、,.?!;:\n]+")
FORMS = {"jueju5": (5, 4), "jueju7": (7, 4), "lushi5": (5, 8), "lushi7": (7, 8)}  # (verse length, verses)


def is_han(character: str) -> bool:
    return "\u3400" <= character <= "\u9fff" or "\uf900" <= character <= "\ufaff"


def verse_lengths(poem: str) -> list[int]:
    """Han characters in each verse, in order (punctuation and other characters not counted)."""
    verses = (sum(map(is_han, part)) for part in VERSE_END.split(poem))
    return [n for n in verses if n]


def form_of(poem: str) -> str | None:
    """'jueju5', 'jueju7', 'lushi5', 'lushi7', or None for any other shape."""
    lengths = verse_lengths(poem)
    for name, (length, count) in FORMS.items():
        if len(lengths) == count and all(n == length for n in lengths):
            return name
    return None


def form_report(poems: Iterable[str]) -> dict:
    """How regular a set of poems is: the share in each regular form, the share keeping the form their
    first verse sets, and the share of verses after the first that match its length."""
    poems = [p for p in poems if verse_lengths(p)]
    forms = Counter(form_of(p) for p in poems)
    later = [(n, lengths[0]) for lengths in map(verse_lengths, poems) for n in lengths[1:]]
    total = len(poems) or 1
    return {"poems": len(poems),
            "regular": sum(v for k, v in forms.items() if k) / total,
            "forms": {name: forms.get(name, 0) / total for name in FORMS},
            "verses_matching_first": sum(n == first for n, first in later) / (len(later) or 1),
            "first_verse_lengths": dict(sorted(Counter(verse_lengths(p)[0] for p in poems).items()))}
