"""The Jinja2 environment for the few templates rendered on the hot path.

Most screens use Django templates. The inbox rows (templates/jinja2/inbox/)
are rendered 25 at a time on every list page, live refresh and infinite
scroll, and Jinja2 compiles a template to Python code: the same rows cost a
fraction of the time. Autoescaping is on (Django's backend sets it), and
undefined names raise instead of rendering as empty text, so a typo fails in
tests rather than showing a blank field.

The templates keep their indentation for reading; it is dropped when they are
compiled (StripIndentation), not sent 25 times per page. Only spaces and tabs
after a line break go, the line break stays, so the browser sees the same white
space between elements as before (none of these templates has a <pre> or a
<textarea>).
"""
import re

from jinja2 import Environment, StrictUndefined
from jinja2.ext import Extension

from inbox.templatetags.inbox_ui import ago, channel_icon, preview


INDENTATION = re.compile(r"\n[ \t]+")


class StripIndentation(Extension):
    def preprocess(self, source, name, filename=None):
        return INDENTATION.sub("\n", source)


def environment(**options):
    options["undefined"] = StrictUndefined
    options["extensions"] = [*options.get("extensions", ()), StripIndentation]
    env = Environment(**options)
    env.filters.update({"ago": ago, "preview": preview})
    env.globals.update({"channel_icon": channel_icon})
    return env
