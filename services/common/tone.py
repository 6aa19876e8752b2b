"""How Amends speaks to customers and the public, as checks over a finished text: it
apologises, owns the failure and thanks the customer, and it blames no one else. The words
per locale live here, in one place: the tone tests run them over every template and draft,
and the console runs them over a reply a person edited before it can be approved."""

from __future__ import annotations

import re
from collections.abc import Mapping

LOCALES = ("en", "ru", "ro")

# Stems, matched case-insensitively anywhere in the text, so inflected forms match too.
APOLOGY: Mapping[str, tuple[str, ...]] = {
    "en": ("sorry", "apologi"),
    "ru": ("извин",),
    "ro": ("scuze",),
}
OWNERSHIP: Mapping[str, tuple[str, ...]] = {
    "en": ("our mistake", "our failure", "our fault", "we let you down", "we should have",
           "should not have happened"),
    "ru": ("наша ошибка", "наша вина", "наш сбой", "мы вас подвели", "мы должны были",
           "так быть не должно", "по нашей вине"),
    "ro": ("greșeala noastră", "vina noastră", "v-am dezamăgit", "trebuia să observăm",
           "nu trebuia să se întâmple"),
}
THANKS: Mapping[str, tuple[str, ...]] = {
    "en": ("thank you", "thanks"),
    "ru": ("спасибо", "благодарим"),
    "ro": ("mulțumim", "mulțumesc"),
}
# Blaming someone or something else, or hiding behind vague causes.
BLAME: Mapping[str, tuple[str, ...]] = {
    "en": ("courier", "carrier", "partner", "supplier", "weather", "technical reason",
           "technical issue", "technical difficult", "beyond our control", "third party",
           "third-party", "force majeure", "unforeseen", "your fault"),
    "ru": ("курьер", "перевозчик", "партнёр", "партнер", "поставщик", "погод",
           "технических причин", "техническ", "не зависящ", "сторонн", "форс-мажор",
           "форс мажор", "по вашей вине"),
    "ro": ("curier", "transportator", "partener", "furnizor", "vreme", "meteo", "tehnic",
           "independent de noi", "terț", "forță majoră", "forta majora", "vina dumneavoastră"),
}
# What a public reply must never propose: the review stays where the customer put it.
REMOVAL: Mapping[str, tuple[str, ...]] = {
    "en": ("delete", "remove your review", "take down", "take it down", "withdraw your review"),
    "ru": ("удалит", "удален", "удалени", "снимите отзыв", "убрать отзыв", "уберите отзыв"),
    "ro": ("șterge", "sterge", "eliminați recenzia", "retrage"),
}


def _has(text: str, stems: tuple[str, ...]) -> list[str]:
    low = text.lower()
    return [s for s in stems if s in low]


def blame_words(text: str, locale: str) -> list[str]:
    """The blame words of `locale` (and English, which any message may slip into) in `text`."""
    found = _has(text, BLAME[locale])
    return found + [w for w in _has(text, BLAME["en"]) if locale != "en" and w not in found]


def problems(text: str, locale: str, *, public: bool = False) -> list[str]:
    """What is wrong with the tone of `text` in `locale` (empty: nothing). `public`: a
    reply posted where everyone reads it, which must not ask for the review to go."""
    found: list[str] = []
    if not _has(text, APOLOGY[locale]):
        found.append("it does not apologise")
    if not _has(text, OWNERSHIP[locale]):
        found.append("it does not own the failure")
    if not _has(text, THANKS[locale]):
        found.append("it does not thank the customer")
    found += [f"it blames: {w!r}" for w in blame_words(text, locale)]
    if public:
        found += [f"it asks for the review to go: {w!r}"
                  for w in _has(text, REMOVAL[locale])]
    return found


_WORD_BREAK = re.compile(r"\s+")


def words(text: str) -> int:
    return len([w for w in _WORD_BREAK.split(text.strip()) if w])
