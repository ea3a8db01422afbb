"""Media URLs that a client got wrong answered with HTTP 400 and a message that says why.

vLLM's media connector (``vllm.multimodal.media.MediaConnector``, registered as ``http`` in
``MEDIA_CONNECTOR_REGISTRY`` and chosen with ``VLLM_MEDIA_CONNECTOR``) answers several
client mistakes as server errors (found against the CPU server, vLLM 0.32):

=============================================  =========================  ==================
request                                        vLLM                       ``mmgvid``
=============================================  =========================  ==================
``http://`` URL nobody answers (closed port)   500 after the fetch timeout  400, names host
``file://`` URL, no ``--allowed-local-...``    500 (``RuntimeError``)       400, names the flag
``file://`` URL to a missing file              500 (``FileNotFoundError``)  400
``data:video/mp4,...`` without ``;base64``     501 (``NotImplementedError``) 400, shows the form
=============================================  =========================  ==================

``MMGVidMediaConnector`` (registered as ``mmgvid``; ``mmgvid serve`` sets
``VLLM_MEDIA_CONNECTOR=mmgvid`` unless it is set) is vLLM's connector with those cases turned
into ``ValueError``, which vLLM answers with 400 (0.26 and 0.32). Everything else, caching,
domains, size limits and decoding included, is vLLM's own. A fetch that fails because the
remote server answered 5xx, timed out or refused the connection is reported as a 400 as well:
the URL is the client's, and the client is the one who can fix or retry it.
"""

from __future__ import annotations

import asyncio

from vllm.multimodal.media import MEDIA_CONNECTOR_REGISTRY, MediaConnector

__all__ = ["NAME", "MMGVidMediaConnector", "register"]

NAME = "mmgvid"


def _fetch_errors() -> tuple[type[BaseException], ...]:
    import aiohttp
    import requests

    return (aiohttp.ClientError, requests.RequestException, asyncio.TimeoutError, TimeoutError, OSError)


class MMGVidMediaConnector(MediaConnector):
    """vLLM's ``MediaConnector`` whose URL errors are ``ValueError`` (HTTP 400)."""

    def _check_url(self, url: str) -> None:
        if url[:5].lower() == "data:":
            spec = url[5:].partition(",")[0]
            if not spec.lower().endswith(";base64"):
                raise ValueError(
                    f"data URL {url[:40]!r}: only base64 data URLs are supported, "
                    "as data:<media type>;base64,<data>"
                )
        elif url[:7].lower() == "file://" and self.allowed_local_media_path is None:
            raise ValueError("file:// URLs are refused: the server runs without --allowed-local-media-path")

    def load_from_url(self, url, media_io, *, fetch_timeout=None):
        self._check_url(url)
        try:
            return super().load_from_url(url, media_io, fetch_timeout=fetch_timeout)
        except _fetch_errors() as exc:
            raise _client_error(url, exc) from exc

    async def load_from_url_async(self, url, media_io, *, fetch_timeout=None):
        self._check_url(url)
        try:
            return await super().load_from_url_async(url, media_io, fetch_timeout=fetch_timeout)
        except _fetch_errors() as exc:
            raise _client_error(url, exc) from exc


def _client_error(url: str, exc: BaseException) -> ValueError:
    shown = url if len(url) <= 100 else url[:97] + "..."
    reason = str(exc) or type(exc).__name__
    return ValueError(f"could not load media from {shown!r}: {reason}")


def register() -> None:
    """Register the connector under ``NAME`` (idempotent)."""
    MEDIA_CONNECTOR_REGISTRY.register(NAME)(MMGVidMediaConnector)
