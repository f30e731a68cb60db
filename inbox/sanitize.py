"""HTML from outside (email bodies, chat widgets) is cleaned here before storage."""
import nh3

ALLOWED_SCHEMES = {"http", "https", "mailto", "tel", "cid"}


def clean_html(html: str) -> str:
    if not html:
        return ""
    return nh3.clean(html, url_schemes=ALLOWED_SCHEMES, link_rel="noopener noreferrer nofollow")
