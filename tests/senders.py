"""Channel senders for tests of the delivery contract (inbox/delivery.py).

They stand in for a channel adapter, not for our own code under test: the
inbox's task, retry and status logic runs for real.
"""
import os

from inbox.delivery import PermanentSendError, TransientSendError

sent = []
failures_before_success = {"n": 0}


def record(message):
    sent.append(message.pk)
    if os.environ.get("TEST_SENT_LOG"):  # processes of a cluster test: one line per send, shared
        with open(os.environ["TEST_SENT_LOG"], "a") as log:
            log.write(f"{message.pk}\n")
    return f"provider-{message.pk}"


def flaky(message):
    if failures_before_success["n"] > 0:
        failures_before_success["n"] -= 1
        raise TransientSendError("429 Too Many Requests")
    return record(message)


def refuse(message):
    raise PermanentSendError("550 mailbox does not exist")
