"""What every cluster test shares: the collected static files.

collectstatic with the production storage (compressed, hashed names) takes the longest part of a
cluster's start; its output depends only on the checkout, so the session collects it once and
every cluster of the session serves the same folder.
"""
import os
import shutil
import tempfile

import pytest

from deploy.cluster import Cluster


@pytest.fixture(scope="session")
def static_root():
    state = tempfile.mkdtemp(prefix="myhibachi-static-")
    os.chmod(state, 0o755)  # nginx's workers (nobody) read the files
    # Settings need a database and Redis address to load; collectstatic touches neither.
    collector = Cluster(state, database_url="postgres://127.0.0.1/unused", redis_url="redis://127.0.0.1:6379/0",
                        static_root=os.path.join(state, "static"))
    try:
        collector.manage("collectstatic", "--noinput", "-v", "0")  # DEBUG=0 pages need the manifest
        collector._readable(collector.static_root)
        yield collector.static_root
    finally:
        shutil.rmtree(state, ignore_errors=True)
