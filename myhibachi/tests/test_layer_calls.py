"""myhibachi/layer_calls.py: channel-layer calls from synchronous code reuse their Redis connections."""
import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis.asyncio.connection import Connection

from myhibachi import layer_calls
from tests.layers import use_own_channel_layer


@pytest.fixture(autouse=True)
def own_layer(settings):
    use_own_channel_layer(settings)


def _listener(layer, group):
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


@pytest.mark.redis
def test_many_sends_from_sync_code_take_one_redis_connection(monkeypatch):
    layer = get_channel_layer()
    channel = _listener(layer, "calls.test")
    layer_calls.run(layer, layer.group_send, "calls.test", {"type": "t", "n": -1})  # the loop's pool, made once
    connects = []
    real_connect = Connection._connect

    async def connect(self):  # opens a socket to Redis
        connects.append(self)
        return await real_connect(self)

    monkeypatch.setattr(Connection, "_connect", connect)
    for n in range(10):
        layer_calls.run(layer, layer.group_send, "calls.test", {"type": "t", "n": n})
    assert len(connects) <= 1  # async_to_sync would have connected ten times: a new event loop each call
    monkeypatch.undo()
    got = [async_to_sync(layer.receive)(channel)["n"] for _ in range(11)]
    assert got == [-1, *range(10)]


def test_without_redis_the_call_is_async_to_sync_and_arrives(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    layer = get_channel_layer()
    channel = _listener(layer, "calls.memory")
    layer_calls.run(layer, layer.group_send, "calls.memory", {"type": "t", "n": 1})
    assert async_to_sync(layer.receive)(channel)["n"] == 1


@pytest.mark.redis
def test_it_refuses_to_block_an_event_loop():
    layer = get_channel_layer()

    async def inside_a_loop():
        layer_calls.run(layer, layer.group_send, "calls.test", {"type": "t"})

    with pytest.raises(RuntimeError, match="synchronous code"):
        async_to_sync(inside_a_loop)()
