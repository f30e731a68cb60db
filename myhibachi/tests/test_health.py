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


def test_ready_answers_503_draining_while_the_drain_file_exists(client, db, settings, tmp_path):
    settings.NODE_DRAIN_FILE = str(tmp_path / "node1.drain")
    assert client.get("/ready").status_code == 200  # no file: ready
    (tmp_path / "node1.drain").touch()
    response = client.get("/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["draining"]
    assert client.get("/health").status_code == 200  # still alive, still serving
    (tmp_path / "node1.drain").unlink()
    assert client.get("/ready").status_code == 200


def test_a_named_node_says_which_node_answered(client, db, settings):
    settings.NODE_NAME = "node7"
    settings.MIDDLEWARE = ["myhibachi.node.NodeHeaderMiddleware", *settings.MIDDLEWARE]
    assert client.get("/health")["X-Node"] == "node7"


def test_the_node_header_middleware_stays_async_under_asgi(settings):
    # An async chain gets an async middleware: no thread hop per request on a node.
    from asgiref.sync import iscoroutinefunction

    from myhibachi.node import NodeHeaderMiddleware

    async def view(request):
        return None

    assert iscoroutinefunction(NodeHeaderMiddleware(view))
    assert not iscoroutinefunction(NodeHeaderMiddleware(lambda request: None))
