"""Settings for a live daphne server started by the tests and the bench.

The same as production-like full mode, except that the channel-layer prefix
and the cache key prefix come from the environment, so a test run shares them
with the test process (events and cached counts meet) and with nobody else
using the same Redis.
"""
import os

from myhibachi.settings import *  # noqa: F401,F403
from myhibachi.settings import CACHES, CHANNEL_LAYERS

if os.environ.get("LIVE_CHANNEL_PREFIX") and "CONFIG" in CHANNEL_LAYERS["default"]:
    CHANNEL_LAYERS["default"]["CONFIG"]["prefix"] = os.environ["LIVE_CHANNEL_PREFIX"]
if os.environ.get("LIVE_CACHE_PREFIX"):
    CACHES["default"]["KEY_PREFIX"] = os.environ["LIVE_CACHE_PREFIX"]

# No worker runs beside the live server, and a shared Redis broker must not
# carry this run's tasks to anyone else's worker: run tasks in process, and
# hand replies to the recording stand-in sender (its real task, retry and
# delivery-status code runs), so the thread shows them moving to "sent".
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = True
INBOX_SENDERS = {"email": "tests.senders.record", "sms": "tests.senders.record",
                 "chat": "channels_ingest.chat.sender.send"}  # the real one: replies reach the visitor's page
# CHAT_ALLOWED_ORIGINS stays empty: the chat widget's browser test (tests/browser/test_chat_widget.py)
# embeds the widget in a page served on http://localhost:<another port>, allowed as one of ALLOWED_HOSTS.

# The kill -9 fault test (tests/cluster/test_faults.py) makes a node hold each reply it has
# stored instead of answering, until it is killed (tests/cluster/hold_replies.py).
if os.environ.get("TEST_HOLD_REPLIES_DIR"):
    MIDDLEWARE = ["tests.cluster.hold_replies.HoldRepliesMiddleware", *MIDDLEWARE]  # noqa: F405

# Each browser test flushes the test database, and the content types come back
# with new ids; this long-lived server must not keep the old ones cached (the
# admin writes its log with them).
MIDDLEWARE = ["tests.browser.live_middleware.fresh_content_types", *MIDDLEWARE]  # noqa: F405

# The test process stores its users' passwords with the fast hasher of tests/settings.py.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
