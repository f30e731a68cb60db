import pytest


def test_health_answers_while_the_process_lives(client):
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_the_database(client, db, settings):
    settings.REDIS_URL = None
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"] == {"database": "ok"}


def test_ready_names_redis_when_it_is_configured_but_down(client, db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = client.get("/ready")
    assert response.status_code == 503
    body = response.json()
    assert body["failing"] == ["redis"]
    assert body["checks"]["database"] == "ok"


@pytest.mark.redis
def test_ready_with_real_redis(client, db):
    response = client.get("/ready")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"] == "ok"


def test_unknown_urls_get_a_404_page_not_a_traceback(client, db):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert b"Page not found" in response.content
    assert b"Traceback" not in response.content
