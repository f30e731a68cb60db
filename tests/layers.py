"""A channel layer of the test's own (full mode shares one Redis between runs and people)."""
import uuid


def use_own_channel_layer(settings) -> None:
    """Point settings.CHANNEL_LAYERS at a prefix nobody else uses (a no-op for the in-memory layer)."""
    layer = dict(settings.CHANNEL_LAYERS["default"])
    if "CONFIG" in layer:
        layer["CONFIG"] = {**layer["CONFIG"], "prefix": f"t{uuid.uuid4().hex[:8]}"}
    settings.CHANNEL_LAYERS = {"default": layer}
