"""The shared web layer's pure parts: contrast as WCAG computes it, locales, and words for
every locale the pages speak."""

from __future__ import annotations

import pytest

from services.common.web import COMMON_WORDS, LOCALES, Brand, contrast_ratio, resolve_locale
from services.fulfilment.page import WORDS

pytestmark = pytest.mark.unit


def test_contrast_is_wcags() -> None:
    assert contrast_ratio("#000000", "#ffffff") == pytest.approx(21.0)
    assert contrast_ratio("#ffffff", "#ffffff") == pytest.approx(1.0)
    # WCAG's own example pair: #767676 on white is the lightest grey that passes AA.
    assert contrast_ratio("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert Brand().color == "#1f4e8c"
    assert contrast_ratio(Brand().color, "#ffffff") >= 4.5  # WCAG AA


def test_a_brand_colour_is_hex_and_readable_under_white() -> None:
    assert Brand(color="#5B2A86").color == "#5b2a86"
    for wrong in ("blue", "#fff", "#777777"):
        with pytest.raises(ValueError, match=r"colour|contrast"):
            Brand(color=wrong)


@pytest.mark.parametrize(("given", "resolved"), [
    ("ru-MD", "ru"), ("ro_RO", "ro"), ("EN", "en"), ("de", "en"), (None, "en"), ("", "en")])
def test_a_locale_without_words_falls_back_to_the_default(given: str | None,
                                                          resolved: str) -> None:
    assert resolve_locale(given) == resolved


@pytest.mark.parametrize("table", [COMMON_WORDS, WORDS], ids=["layout", "customer page"])
def test_every_locale_has_every_word(table: dict[str, dict[str, str]]) -> None:
    assert sorted(table) == sorted(LOCALES)
    keys = set(table["en"])
    for locale in LOCALES:
        assert set(table[locale]) == keys, locale
        assert all(value.strip() for value in table[locale].values()), locale
