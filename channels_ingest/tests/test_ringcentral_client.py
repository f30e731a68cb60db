"""The RingCentral client against the stand-in: JWT grant, a token shared through the cache,
renewal on expiry, 429 and 5xx."""
import pytest

from channels_ingest.ringcentral import client as rc

SMS = f"{rc.EXTENSION}/sms"
BODY = {"from": {"phoneNumber": "+14155550199"}, "to": [{"phoneNumber": "+14155550100"}], "text": "Hi"}


def test_one_token_serves_every_client_until_it_expires(ringcentral):
    with rc.client() as first:
        first.post_json(SMS, BODY)
    with rc.client() as second:  # another process would read the same cache entry
        second.post_json(SMS, BODY)
    assert ringcentral.token_grants == 1

    ringcentral.expire_tokens()  # RingCentral now answers 401 to it
    with rc.client() as third:
        third.post_json(SMS, BODY)
    assert ringcentral.token_grants == 2
    assert len(ringcentral.sent) == 3


def test_wrong_client_secret_is_refused_with_ringcentrals_reason(ringcentral, settings):
    settings.RINGCENTRAL_CLIENT_SECRET = "not-the-secret"
    with rc.client() as api, pytest.raises(rc.Refused) as refused:
        api.post_json(SMS, BODY)
    assert refused.value.status == 401
    assert "Invalid client" in refused.value.message
    assert ringcentral.sent == []


def test_a_short_retry_after_is_waited_out_once(ringcentral):
    waits = []
    ringcentral.fail_next(429, retry_after=2, path_contains="/sms")
    with rc.client(sleep=waits.append) as api:
        record = api.post_json(SMS, BODY)
    assert waits == [2.0]
    assert record["messageStatus"] == "Queued"


def test_a_long_retry_after_is_handed_to_the_caller(ringcentral):
    ringcentral.fail_next(429, retry_after=120, path_contains="/sms")
    with rc.client(sleep=pytest.fail) as api, pytest.raises(rc.RateLimited) as limited:
        api.post_json(SMS, BODY)
    assert limited.value.retry_after == 120


def test_a_5xx_is_not_retried_here(ringcentral):
    ringcentral.fail_next(503, times=3, path_contains="/sms")
    with rc.client(sleep=pytest.fail) as api, pytest.raises(rc.Unavailable) as down:
        api.post_json(SMS, BODY)
    assert down.value.status == 503
    assert [path for method, path in ringcentral.requests if path == SMS] == [SMS]  # one try, no hammering


def test_downloads_never_take_our_token_to_another_host(ringcentral):
    with rc.client() as api, pytest.raises(rc.Refused, match="not our RingCentral server"):
        api.download("https://attacker.example.com/steal", max_bytes=1000)


def test_download_over_the_limit_is_refused(ringcentral):
    record = ringcentral.add_message(attachments=[(b"x" * 5000, "image/png", "big.png")])
    with rc.client() as api, pytest.raises(rc.Refused, match="limit"):
        api.download(record["attachments"][1]["uri"], max_bytes=1000)
