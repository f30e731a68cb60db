"""Test-only: a node that stores a reply and then never answers, as one killed at that moment.

The kill -9 fault test (tests/cluster/test_faults.py) needs replies in flight when
the node dies: committed (message stored, sent, Idempotency-Key recorded) but not
yet answered. While the file TEST_HOLD_REPLIES_DIR/hold-NODE_NAME exists (the
test creates it for node1), this outermost middleware holds every answered reply
on that node: it writes a marker file held-* into TEST_HOLD_REPLIES_DIR (the test
waits for one before the kill) and sleeps. The
client's retry with the same key then lands on the other node, which must
answer from the stored key (Idempotent-Replayed) and neither store nor send again.
"""
import os
import time

from django.conf import settings


class HoldRepliesMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        folder = os.environ["TEST_HOLD_REPLIES_DIR"]
        if (request.method == "POST" and request.path.endswith("/reply") and response.status_code == 201
                and os.path.exists(os.path.join(folder, f"hold-{settings.NODE_NAME}"))):
            marker = os.path.join(folder, f"held-{os.getpid()}-{time.monotonic_ns()}")
            open(marker, "w").close()
            time.sleep(120)  # until the test kills this node
        return response
