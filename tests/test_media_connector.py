"""``MMGVidMediaConnector``: the URL mistakes vLLM answers with 5xx become ``ValueError`` (HTTP 400)
with a message that says what is wrong; what vLLM answers right stays vLLM's."""

from __future__ import annotations

import pytest
from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY
from vllm.multimodal.media.image import ImageMediaIO
from vllm.multimodal.media.video import VideoMediaIO

from mmgvid_vllm import media_connector
from mmgvid_vllm.launcher import free_port


@pytest.fixture
def video_io():
    return VideoMediaIO(ImageMediaIO(), num_frames=4)


def test_registered_under_its_name():
    media_connector.register()
    assert MEDIA_CONNECTOR_REGISTRY.name2class[media_connector.NAME] is media_connector.MMGVidMediaConnector


@pytest.mark.parametrize("asynchronous", [False, True])
def test_closed_port(video_io, asynchronous):
    import asyncio

    connector = media_connector.MMGVidMediaConnector()
    url = f"http://127.0.0.1:{free_port()}/video.mp4"
    with pytest.raises(ValueError, match="could not load media from 'http://127.0.0.1"):
        if asynchronous:
            asyncio.run(connector.load_from_url_async(url, video_io, fetch_timeout=5))
        else:
            connector.load_from_url(url, video_io, fetch_timeout=5)


def test_file_url_without_allowed_path(video_io):
    with pytest.raises(ValueError, match="--allowed-local-media-path"):
        media_connector.MMGVidMediaConnector().load_from_url("file:///etc/hostname", video_io)


def test_missing_file(video_io, tmp_path):
    connector = media_connector.MMGVidMediaConnector(allowed_local_media_path=str(tmp_path))
    with pytest.raises(ValueError, match="could not load media"):
        connector.load_from_url((tmp_path / "missing.mp4").as_uri(), video_io)


def test_file_outside_the_allowed_path_stays_vllms_400(video_io, tmp_path):
    connector = media_connector.MMGVidMediaConnector(allowed_local_media_path=str(tmp_path))
    with pytest.raises(ValueError, match="must be a subpath"):
        connector.load_from_url("file:///etc/hostname", video_io)


@pytest.mark.parametrize("url", ["data:video/mp4,AAAA", "data:video/mp4;charset=x,AAAA"])
def test_data_url_without_base64(video_io, url):
    with pytest.raises(ValueError, match="only base64 data URLs"):
        media_connector.MMGVidMediaConnector().load_from_url(url, video_io)
