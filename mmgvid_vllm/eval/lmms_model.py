"""``--model mmgvid``: lmms-eval's ``openai`` chat model, set up for a server that prunes videos.

What it changes in lmms-eval 0.7.3's ``openai`` model, each a way that model misleads
against this server out of the box:

- each sample's video goes as ONE ``video_url`` part (``pass_video_url=True``) that the server
  decodes and prunes; a local file goes as a ``file://`` URL, so the server needs
  ``--allowed-local-media-path`` (a directory above the videos);
- ``max_frames_num`` defaults to 32 (LLaVA-OneVision; pass 64 for LLaVA-Video), sent as
  ``media_io_kwargs.video.num_frames``: the ``openai`` model's default of 10 silently cuts the video;
- ``retention`` and ``method`` (``--model_args``) go with every request as
  ``mm_processor_kwargs`` (``mmgvid_retention``, ``mmgvid_method``); unset, the server's own apply.
  lmms-eval drops ``extra_body`` given in ``--model_args`` or ``--gen_kwargs``;
- a request that fails (after the OpenAI client's own retries) ends the run with a non-zero exit
  and the server's answer. The ``openai`` model scores the error text as the answer and prints an
  accuracy table; its CLI also turns an ``Exception`` into a log line and exit status 0, so this
  raises ``SystemExit``;
- ``model`` defaults to the server's (first) model, ``api_key`` to ``$OPENAI_API_KEY`` or a
  placeholder (a vLLM server started without ``--api-key`` takes any).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

import openai
from lmms_eval.models.chat.openai import OpenAICompatible

from ..config import METHOD_KEY, RETENTION_KEY, check_method
from ..pruning import check_retention

__all__ = ["MMGVidOpenAI"]

PREFIX = "lmms-eval --model mmgvid"


class MMGVidOpenAI(OpenAICompatible):
    """``--model mmgvid --model_args base_url=URL[,retention=R][,method=M][,max_frames_num=N]...``"""

    def __init__(self, retention=None, method=None, model=None, api_key=None, max_frames_num=32, pass_video_url=True,
                 **kwargs):
        api_key = api_key or os.environ.get("OPENAI_API_KEY") or "EMPTY"
        super().__init__(model=model, api_key=api_key, max_frames_num=max_frames_num, pass_video_url=pass_video_url,
                         **kwargs)
        self.mm_processor_kwargs = {}
        try:
            if retention is not None:
                self.mm_processor_kwargs[RETENTION_KEY] = check_retention(retention)
            if method is not None:
                self.mm_processor_kwargs[METHOD_KEY] = check_method(method)
        except ValueError as e:
            raise SystemExit(f"{PREFIX}: {e}") from e
        self.openai_client = self.client
        # The one call lmms-eval's generate_until makes on its client.
        self.client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=self.create)))
        if model is None:
            self.model_version = self.call(self.openai_client.models.list).data[0].id

    def create(self, **payload):
        """``chat.completions.create`` with this run's ``mm_processor_kwargs`` added."""
        if self.mm_processor_kwargs:
            payload["extra_body"] = {**payload.get("extra_body", {}), "mm_processor_kwargs": self.mm_processor_kwargs}
        return self.call(self.openai_client.chat.completions.create, **payload)

    def call(self, fn, **kwargs):
        """``fn(**kwargs)``; an OpenAI API error ends the run, with what the server answered."""
        try:
            return fn(**kwargs)
        except openai.APIStatusError as e:
            raise SystemExit(f"{PREFIX}: HTTP {e.status_code} from {e.request.url}: {e.message}") from e
        except openai.APIError as e:
            raise SystemExit(f"{PREFIX}: request to {self.openai_client.base_url} failed: {e}") from e
