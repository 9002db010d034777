"""Phrasing helpers shared by the codecs' prompt renderers and parsers.

Prompts name things in free text (class names, referred objects, instance categories). A name
that could be mistaken for sentence structure (punctuation, quotes, verbs such as "is", a
leading article) is written as a JSON string (`"the cat's toy, left"`), and parsers read JSON
strings back verbatim. So every name survives `parse(render(...))`, while ordinary names stay
unquoted, as in the prompts the real model was trained on.

Parsers first hide quoted strings behind placeholders (`mask_quoted`), so that punctuation or
color-like text inside a quoted name never confuses the sentence grammar, then put them back.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")

# A placeholder standing for the i-th quoted string of a prompt; NUL never occurs in prompts.
_PLACEHOLDER = re.compile(r"\x00(\d+)\x00")
# JSON strings (with escapes) and typographic quotes (no escapes); no newline inside, so a stray
# inch mark (`5" tall`) cannot swallow the rest of a multi-line prompt.
_QUOTED = re.compile(r'"(?:[^"\\\n]|\\.)*"|“[^”\n]*”')

# Words that carry the grammar of "<name> is <color>" statements; a bare name must not contain
# them, or a parser could split the name there.
_VERB_WORDS = frozenset({"is", "are", "was", "were", "will", "should", "must", "shall", "be"})
# Leading words that parsers strip from a subject ("The sky", "and the fence").
LEADING_WORDS = ("and", "then", "while", "whereas", "also", "but", "plus")
ARTICLES = ("the", "a", "an")
_PLAIN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9'\-]|(?<! ) (?! ))*")


def choice(rng: np.random.Generator, options: Sequence[T]) -> T:
    """One element of `options`, drawn with `rng` (deterministic for a seeded Generator)."""
    if not options:
        raise ValueError("choice() needs at least one option")
    return options[int(rng.integers(len(options)))]


def is_plain_name(name: str) -> bool:
    """Whether `name` can be written unquoted in a sentence and read back exactly.

    Plain: ASCII letters, digits, apostrophes, hyphens and single inner spaces; no grammar
    word ("is", "are", ...); not starting with an article or a connective ("and", ...).
    """
    if not _PLAIN.fullmatch(name) or name[-1] in "-' ":
        return False
    words = name.lower().split(" ")
    if words[0] in ARTICLES or words[0] in LEADING_WORDS:
        return False
    return not any(w in _VERB_WORDS for w in words)


def quote_name(name: str) -> str:
    """`name` as written in a sentence: bare when plain, else a JSON string literal."""
    if not name or not name.strip():
        raise ValueError(f"a name must have visible characters, got {name!r}")
    return name if is_plain_name(name) else json.dumps(name, ensure_ascii=False)


def mask_quoted(text: str) -> tuple[str, list[str]]:
    """Replace each quoted string by a placeholder `\\0<i>\\0`; returns (masked, quoted tokens)."""
    quoted: list[str] = []

    def repl(m: re.Match) -> str:
        quoted.append(m.group(0))
        return f"\x00{len(quoted) - 1}\x00"

    return _QUOTED.sub(repl, text), quoted


def unquote(token: str) -> str:
    """The text inside a quoted token: JSON escapes decoded; typographic quotes just dropped."""
    if token.startswith("“"):
        return token[1:-1]
    try:
        return json.loads(token)
    except json.JSONDecodeError:  # an invalid escape: keep the raw inside
        return token[1:-1]


def placeholder_index(text: str) -> int | None:
    """The index if `text` is exactly one placeholder (surrounding spaces allowed), else None."""
    m = _PLACEHOLDER.fullmatch(text.strip())
    return int(m.group(1)) if m else None


def unmask(text: str, quoted: list[str]) -> str:
    """Put the original quoted tokens (quotes included) back into masked text."""
    return _PLACEHOLDER.sub(lambda m: quoted[int(m.group(1))], text)


def clean_subject(masked: str, quoted: list[str]) -> str:
    """A statement's subject from its masked text: connectives and one article stripped.

    A subject that is exactly one quoted string gives its content verbatim; otherwise the
    original text (quotes included) is returned, e.g. `The "crescent"-shaped croissant`.
    """
    words = masked.strip()
    while True:
        head, _, rest = words.partition(" ")
        if head.lower() in LEADING_WORDS and rest:
            words = rest.lstrip()
        else:
            break
    head, _, rest = words.partition(" ")
    if head.lower() in ARTICLES and rest:
        words = rest.lstrip()
    index = placeholder_index(words)
    if index is not None:
        return unquote(quoted[index])
    return unmask(words, quoted).strip()


def find_subject(prompt: str, patterns) -> str | None:
    """The subject captured (group "t") by the first of `patterns` that matches the prompt,
    searched with quoted names masked so their contents cannot trigger a pattern."""
    masked, quoted = mask_quoted(prompt)
    for pattern in patterns:
        m = pattern.search(masked)
        if m:
            return clean_subject(m.group("t"), quoted) or None
    return None


def verb_for(name: str) -> str:
    """'are' for names that read as plurals ('cars', 'people'), else 'is' (cosmetic only)."""
    low = name.lower()
    plural = (low.endswith("s") and not low.endswith(("ss", "us", "is"))) or low.endswith("people")
    return "are" if plural else "is"


def sentence(text: str) -> str:
    """`text` with its first letter upper-cased and a final period if it lacks punctuation."""
    text = text.strip()
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
