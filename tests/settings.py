"""Settings of the test suite: myhibachi.settings in development mode.

myhibachi.settings refuses to start without DEBUG; the suite is development
mode unless the environment says otherwise, as `make test` would set it.
Subprocesses the tests start inherit DEBUG from here.
"""
import os

os.environ.setdefault("DEBUG", "1")

from myhibachi.settings import *  # noqa: E402,F401,F403

# Hashing a password the production way (PBKDF2, a million rounds) takes about a third of a second,
# and the suite makes a user with a password in most of its tests. The tests check who may log
# in, not how hard a stolen hash is to crack: a fast hasher (Django's advice for tests). The live
# servers the tests start use the same list (tests/browser/live_settings.py), so the users a test
# makes can log in there.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
