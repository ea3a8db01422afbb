"""``plugin.register()`` on a vLLM it does not support: stop with one message when pruning is
asked for, otherwise leave vLLM's model untouched."""

from __future__ import annotations

import pytest
from vllm import ModelRegistry

from mmgvid_vllm import config, plugin, vllm_support


@pytest.fixture
def unsupported_vllm(monkeypatch):
    monkeypatch.setattr(vllm_support, "installed_vllm_version", lambda: "0.99.0")
    monkeypatch.delenv(vllm_support.ALLOW_UNSUPPORTED_ENV, raising=False)
    config.server_config.cache_clear()
    yield
    config.server_config.cache_clear()


def _registered_class() -> object:
    return ModelRegistry.models.get(plugin.ARCHITECTURE)


def test_pruning_asked_for_stops_with_the_version_named(unsupported_vllm, monkeypatch):
    monkeypatch.setenv("MMGVID_RETENTION", "0.25")
    with pytest.raises(RuntimeError, match=r"vLLM 0\.99\.0"):
        plugin.register()


def test_pruning_in_server_args_stops(unsupported_vllm, monkeypatch):
    monkeypatch.delenv("MMGVID_RETENTION", raising=False)
    monkeypatch.setattr("sys.argv", ["vllm", "--mm-processor-kwargs", '{"mmgvid_retention": 0.25}'])
    with pytest.raises(RuntimeError, match=r"vLLM 0\.99\.0"):
        plugin.register()


def test_no_pruning_leaves_vllm_untouched(unsupported_vllm, monkeypatch):
    monkeypatch.delenv("MMGVID_RETENTION", raising=False)
    monkeypatch.setattr("sys.argv", ["vllm", "serve"])
    before = _registered_class()
    plugin.register()
    assert _registered_class() is before
