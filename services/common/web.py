"""Server-rendered pages (ADR 0011): one Jinja2 environment per service over the shared base
layout and the service's own page templates, the brand from settings, the visitor's locale,
one stylesheet served by the app, and the headers every page carries.

No page needs JavaScript: forms post and redirect (POST-redirect-GET). A service that serves
pages builds one `Web` in its app factory and mounts `web.static_router()`; the customer's page
(fulfilment) and the operations console reuse the layout (`base.html.j2`), the refusal page
and the words below.
"""

# ruff: noqa: RUF001 - Russian words are written in Cyrillic on purpose

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from jinja2 import BaseLoader, ChoiceLoader, Environment, PackageLoader, StrictUndefined
from pydantic import BaseModel, Field, field_validator

LOCALES = ("en", "ru", "ro")
DEFAULT_LOCALE = "en"
STYLESHEET = "/static/amends.css"
BRAND_STYLESHEET = "/static/brand.css"
# Pages carry no script, take styles from the app alone and post forms only to themselves.
CONTENT_SECURITY_POLICY = ("default-src 'none'; style-src 'self'; img-src 'self'; "
                           "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
_HEX = re.compile(r"^#[0-9a-fA-F]{6}$")
AA_CONTRAST = 4.5  # WCAG 2.2 AA for normal text


def resolve_locale(locale: str | None) -> str:
    """The locale we have words for ("ru-MD" -> "ru"); the default when we have none."""
    language = (locale or "").split("-", 1)[0].split("_", 1)[0].lower()
    return language if language in LOCALES else DEFAULT_LOCALE


def _luminance(color: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast_ratio(first: str, second: str) -> float:
    """WCAG's contrast ratio of two `#rrggbb` colours (1 to 21)."""
    light, dark = sorted((_luminance(first), _luminance(second)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


class Brand(BaseModel):
    """What a page shows of the company: its name and its colour. The colour fills the header
    and the buttons under white text, so it must be dark enough to read white on it (AA)."""

    name: str = Field(default="Customer care", min_length=1, max_length=80)
    color: str = Field(default="#1f4e8c", description="#rrggbb, under white text")

    @field_validator("color")
    @classmethod
    def _readable(cls, color: str) -> str:
        if not _HEX.match(color):
            raise ValueError("a colour is #rrggbb")
        ratio = contrast_ratio(color, "#ffffff")
        if ratio < AA_CONTRAST:
            raise ValueError(f"white text on {color} has a contrast of {ratio:.2f}:1; WCAG AA "
                             f"needs {AA_CONTRAST}:1: choose a darker colour")
        return color.lower()


# The words of the shared layout and refusal page, per locale; a service's pages add theirs.
COMMON_WORDS: dict[str, dict[str, str]] = {
    "en": {
        "skip": "Skip to the content",
        "gone_title": "This link has expired",
        "gone_text": "Links in our messages work for a limited time. Everything we gave you "
                     "stays yours; to see it again, reply to our message or contact our "
                     "customer care team and we will send you a new link.",
        "refused_title": "This link does not open this page",
        "refused_text": "The link may be incomplete or changed. Please open it again from our "
                        "message, or contact our customer care team.",
        "missing_title": "Nothing to show yet",
        "missing_text": "We are still preparing this page. Please try again in a minute.",
    },
    "ru": {
        "skip": "Перейти к содержанию",
        "gone_title": "Срок действия ссылки истёк",
        "gone_text": "Ссылки в наших письмах действуют ограниченное время. Всё, что мы вам "
                     "дали, остаётся за вами; чтобы увидеть это снова, ответьте на наше письмо "
                     "или напишите в службу заботы о клиентах, и мы пришлём новую ссылку.",
        "refused_title": "Эта ссылка не открывает эту страницу",
        "refused_text": "Возможно, ссылка неполная или изменена. Откройте её ещё раз из "
                        "нашего письма или напишите в службу заботы о клиентах.",
        "missing_title": "Пока нечего показать",
        "missing_text": "Мы ещё готовим эту страницу. Попробуйте через минуту.",
    },
    "ro": {
        "skip": "Salt la conținut",
        "gone_title": "Acest link a expirat",
        "gone_text": "Linkurile din mesajele noastre funcționează un timp limitat. Tot ce "
                     "v-am oferit rămâne al dumneavoastră; pentru a-l vedea din nou, "
                     "răspundeți la mesajul nostru sau contactați echipa de relații cu "
                     "clienții și vă trimitem un link nou.",
        "refused_title": "Acest link nu deschide această pagină",
        "refused_text": "Este posibil ca linkul să fie incomplet sau modificat. Deschideți-l "
                        "din nou din mesajul nostru sau contactați echipa de relații cu "
                        "clienții.",
        "missing_title": "Încă nu este nimic de arătat",
        "missing_text": "Încă pregătim această pagină. Încercați din nou peste un minut.",
    },
}

# A page's headers: never cached (it may carry a bearer token in its URL), never passed on
# as a referrer, never framed.
PAGE_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer",
                "Content-Security-Policy": CONTENT_SECURITY_POLICY,
                "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY"}


def wants_html(request: Request) -> bool:
    """A browser asks for HTML; API clients ask for JSON or anything (`*/*`)."""
    return "text/html" in request.headers.get("accept", "")


@functools.cache
def stylesheet() -> bytes:
    return resources.files("services.common").joinpath("static/amends.css").read_bytes()


class Web:
    """A service's pages: its templates over the shared ones, rendered in a locale for a
    brand. `words` are the service's own words per locale (every locale the same keys)."""

    def __init__(self, brand: Brand, *, package: str | None = None,
                 brands: Mapping[str, Brand] | None = None,
                 words: Mapping[str, Mapping[str, str]] | None = None) -> None:
        self.brand = brand
        self.brands = dict(brands or {})
        loaders: list[BaseLoader] = []
        if package is not None:
            loaders.append(PackageLoader(package, "pages"))
        loaders.append(PackageLoader("services.common", "templates"))
        self.env = Environment(loader=ChoiceLoader(loaders), autoescape=True,
                               undefined=StrictUndefined, auto_reload=False,
                               trim_blocks=True, lstrip_blocks=True)
        self.words = {locale: {**COMMON_WORDS[locale], **(words or {}).get(locale, {})}
                      for locale in LOCALES}

    def brand_of(self, tenant: str | None) -> Brand:
        """A tenant's brand when it has one, else the deployment's."""
        return self.brands.get(tenant or "", self.brand)

    def render(self, template: str, *, locale: str | None, tenant: str | None = None,
               status: int = 200, **context: Any) -> HTMLResponse:
        chosen = resolve_locale(locale)
        html = self.env.get_template(template).render(
            lang=chosen, words=self.words[chosen], brand=self.brand_of(tenant),
            stylesheet=STYLESHEET, brand_stylesheet=self.brand_href(tenant), **context)
        return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)

    def refusal(self, status: int, *, locale: str | None = None,
                tenant: str | None = None) -> HTMLResponse:
        """The page for a link that opens nothing: expired (410), refused (403), or nothing
        recorded for it yet (404); a human message, never the check's details."""
        kind = {410: "gone", 404: "missing"}.get(status, "refused")
        return self.render("refused.html.j2", locale=locale, tenant=tenant, status=status,
                           kind=kind)

    def brand_href(self, tenant: str | None) -> str:
        return (f"{BRAND_STYLESHEET}?tenant={quote(tenant, safe='')}"
                if tenant in self.brands else BRAND_STYLESHEET)

    def static_router(self) -> APIRouter:
        """`/static/amends.css`, the one stylesheet, and the brand's colour as a stylesheet
        of its own (a page has no inline style: its policy allows the app's files alone).
        Served by the app: no CDN, no build step."""
        api = APIRouter(include_in_schema=False)
        headers = {"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"}

        @api.get(STYLESHEET)
        async def css() -> Response:
            return Response(stylesheet(), media_type="text/css", headers=headers)

        @api.get(BRAND_STYLESHEET)
        async def brand_css(tenant: Annotated[str | None, Query(max_length=128)] = None
                            ) -> Response:
            # The colour was validated as #rrggbb: nothing else reaches the stylesheet.
            return Response(f":root {{ --brand: {self.brand_of(tenant).color}; }}\n",
                            media_type="text/css", headers=headers)

        return api
