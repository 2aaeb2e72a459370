"""The client itself: lifecycle, configuration from the environment, its repr.

The send path, the transport, the resources and the edit inputs have their own test
modules (test_sender, test_transport, test_resources, test_inputs).
"""

from __future__ import annotations

import pytest
from servers import OK_IMAGES, Recorder, Serve, client, reply_json

import ttapi_async as tt


pytestmark = pytest.mark.anyio


async def test_lifecycle(serve: Serve) -> None:
    """Opens lazily, refuses use after close and reopening; the repr never shows the key."""
    rec = Recorder(reply_json(OK_IMAGES))
    c = client(await serve(rec.app()))
    assert "test-key-123" not in repr(c)
    await c.images.generate(prompt="fox", model="gpt-image-1")
    await c.aclose()
    assert c.closed
    with pytest.raises(tt.ClientClosedError):
        await c.images.generate(prompt="fox", model="gpt-image-1")
    with pytest.raises(tt.ClientClosedError):
        async with c:
            pass
    assert len(rec.seen) == 1


def test_configuration_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """TTAPI_API_KEY and TTAPI_BASE_URL are read; a missing key is a clear error."""
    monkeypatch.setenv("TTAPI_API_KEY", "env-key")
    monkeypatch.setenv("TTAPI_BASE_URL", "https://api.ttapi.org/")
    c = tt.Client()
    assert c.base_url == "https://api.ttapi.org"
    monkeypatch.delenv("TTAPI_API_KEY")
    with pytest.raises(tt.ValidationError, match="TTAPI_API_KEY"):
        tt.Client()
    with pytest.raises(tt.ValidationError, match="base_url"):
        tt.Client("k", base_url="api.ttapi.io")
