"""Settings of the test suite: myhibachi.settings in development mode.

myhibachi.settings refuses to start without DEBUG; the suite is development
mode unless the environment says otherwise, as `make test` would set it.
Subprocesses the tests start inherit DEBUG from here.
"""
import os

os.environ.setdefault("DEBUG", "1")

from myhibachi.settings import *  # noqa: E402,F401,F403
