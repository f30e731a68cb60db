"""The Jinja2 environment for the few templates rendered on the hot path.

Most screens use Django templates. The inbox rows (templates/jinja2/inbox/)
are rendered 25 at a time on every list page, live refresh and infinite
scroll, and Jinja2 compiles a template to Python code: the same rows cost a
fraction of the time. Autoescaping is on (Django's backend sets it), and
undefined names raise instead of rendering as empty text, so a typo fails in
tests rather than showing a blank field.
"""
from jinja2 import Environment, StrictUndefined

from inbox.templatetags.inbox_ui import ago, channel_icon, preview


def environment(**options):
    options["undefined"] = StrictUndefined
    env = Environment(**options)
    env.filters.update({"ago": ago, "preview": preview})
    env.globals.update({"channel_icon": channel_icon})
    return env
