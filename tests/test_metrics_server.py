"""mmgvid_* metrics on a real CPU vLLM server's /metrics, with one and with two API servers,
and the deploy/ Prometheus rules and Grafana dashboard queried through a real Prometheus.

One server at a time (module-scoped, parametrised by ``--api-server-count``; with 2, ``VllmServer``
starts it through vLLM's CLI ``serve``, and the test checks that two API-server processes run). Each request
carries a distinct video, so each one is pruned (no encoder-cache hit) and observed once; then
requests that the server answers 400 after processing their video (``REJECTED``), which count nothing.
The Prometheus test needs the Debian package ``prometheus`` (``prometheus`` and ``promtool``);
it is skipped without it.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml
from helpers.plugin import post_chat
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from mmgvid_vllm.client import chat_body
from mmgvid_vllm.launcher import CPU_DEFAULT_ARGS, VllmServer, free_port
from mmgvid_vllm.media import make_video_frames
from mmgvid_vllm.pruning import num_kept
from mmgvid_vllm.tiny_model import FRAME_TOKENS, ensure_tiny_model

pytestmark = pytest.mark.server

DEPLOY = Path(__file__).resolve().parent.parent / "deploy"
RETENTION = 0.25  # MMGVID_RETENTION of the server
# (frames, per-request retention or None for the server's); 1.0 = pruning off.
REQUESTS = [(4, None), (6, 0.15), (4, 1.0), (8, 0.5), (3, 1.0)]
# (frames, retention, request params) of requests answered 400 after their video was processed
REJECTED = [
    (4, None, {"max_tokens": 0}),
    (4, 0.5, {"max_tokens": -1}),
    # all 48 frames (no sampling): 48 * 196 + 1 video tokens > --max-model-len 8192
    (48, 1.0, {"max_tokens": 1, "media_io_kwargs": {"video": {"num_frames": -1}}}),
    (4, None, {"max_tokens": 1, "mm_processor_kwargs": {"mmgvid_retention": 0.5, "do_resize": False}}),
]
HISTOGRAMS = ("mmgvid_video_retention_ratio", "mmgvid_video_segments", "mmgvid_pruning_duration_seconds")


def frames_url(num_frames: int, seed: int) -> str:
    """vLLM's frame-list video URL: exactly ``num_frames`` frames, no sampling."""
    parts = []
    for frame in make_video_frames(num_frames, 64, 48, seed):
        buf = io.BytesIO()
        Image.fromarray(frame).save(buf, format="JPEG")
        parts.append(base64.b64encode(buf.getvalue()).decode())
    return "data:video/jpeg;base64," + ",".join(parts)


class Client:
    """The server plus the videos sent so far, and what their counts must be."""

    def __init__(self, server: VllmServer) -> None:
        self.server = server
        self.sent: list[tuple[int, float]] = []  # (frames, effective retention)

    def send(self, num_frames: int, retention: float | None) -> None:
        response = post_chat(self.server, chat_body(None, frames_url(num_frames, seed=len(self.sent)),
                                                    retention=retention))
        assert response.status_code == 200, response.text
        self.sent.append((num_frames, RETENTION if retention is None else retention))

    def reject(self, num_frames: int, retention: float | None, **params) -> None:
        """A request the server answers 400 after processing its video: it must count nothing."""
        url = frames_url(num_frames, seed=1000 + num_frames)
        body = post_chat(self.server, chat_body(None, url, retention=retention, **params)).json()
        assert body.get("error", {}).get("code") == 400, (num_frames, retention, params, body)

    def expected(self) -> dict[str, float]:
        original = sum(t * FRAME_TOKENS for t, _ in self.sent)
        kept = sum(num_kept(t, FRAME_TOKENS, r) if r < 1 else t * FRAME_TOKENS for t, r in self.sent)
        return {"original": original, "kept": kept, "unpruned": sum(r >= 1 for _, r in self.sent)}


@pytest.fixture(scope="module", params=[1, 2], ids=["api-servers-1", "api-servers-2"])
def client(request):
    args = [*CPU_DEFAULT_ARGS, "--api-server-count", str(request.param)]
    env = {"VLLM_PLUGINS": "mmgvid", "MMGVID_RETENTION": str(RETENTION)}
    env.update(PROMETHEUS_MULTIPROC_DIR=None, MMGVID_METRICS_DIR=None)  # fresh directories
    with VllmServer(ensure_tiny_model(), extra_args=args, env=env) as server:
        client = Client(server)
        for num_frames, retention in REQUESTS:
            client.send(num_frames, retention)
        for num_frames, retention, params in REJECTED:
            client.reject(num_frames, retention, **params)
        client.api_servers = request.param
        yield client


def scrape(server: VllmServer) -> dict[str, list]:
    """name -> samples of /metrics (a new connection each time: with 2 API servers, either answers)."""
    text = requests.get(server.url + "/metrics", headers={"Connection": "close"}, timeout=30).text
    samples: dict[str, list] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples.setdefault(s.name, []).append(s)
    return samples


def total(samples, name: str, **labels) -> float:
    return sum(s.value for s in samples.get(name, []) if labels.items() <= s.labels.items())


def test_api_server_processes(client):
    """--api-server-count 2 really runs two API-server processes (vLLM's CLI titles them
    VLLM::APIServer_<i>); with one, the launched process serves and no such process exists."""
    pids = client.server.api_server_pids()
    if client.api_servers == 1:
        assert pids == [], pids
    else:
        assert len(pids) == client.api_servers, (pids, client.server.log_tail(40))
        log = client.server.log_path.read_text(errors="replace")
        assert f"Started {client.api_servers} API server processes" in log, client.server.log_tail(40)


def test_token_totals_and_histogram_counts(client):
    want = client.expected()
    n = len(client.sent)
    for _ in range(4 if client.api_servers > 1 else 1):  # every API server shows the same totals
        samples = scrape(client.server)
        assert total(samples, "mmgvid_video_original_tokens_total") == want["original"]
        assert total(samples, "mmgvid_video_kept_tokens_total") == want["kept"]
        assert total(samples, "mmgvid_kv_cache_tokens_avoided_total") == want["original"] - want["kept"]
        for name in HISTOGRAMS:
            assert total(samples, name + "_count") == n, name
            assert total(samples, name + "_count", method="none") == want["unpruned"], name
            assert total(samples, name + "_bucket", le="+Inf") == n, name
        assert total(samples, "mmgvid_video_retention_ratio_sum", method="none") == want["unpruned"]
        assert total(samples, "mmgvid_pruning_errors_total") == 0
        assert total(samples, "mmgvid_retention_target_ratio") == RETENTION
        # labelled like vLLM's own series, on the same endpoint
        model = client.server.model
        assert total(samples, "vllm:request_success_total", model_name=model) == n
        assert {s.labels["model_name"] for s in samples["mmgvid_video_kept_tokens_total"]} == {model}


def test_pruning_time_is_positive_for_pruned_videos(client):
    samples = scrape(client.server)
    assert total(samples, "mmgvid_pruning_duration_seconds_sum", method="mmgvid") > 0
    assert total(samples, "mmgvid_video_segments_sum", method="mmgvid") >= total(
        samples, "mmgvid_video_segments_count", method="mmgvid"
    )


# -- Prometheus: deploy/ rules and dashboard against this server --------------------------------
def dashboard_exprs() -> list[str]:
    dash = json.loads((DEPLOY / "grafana/dashboards/mmgvid.json").read_text())
    return [t["expr"] for p in dash["panels"] for t in p["targets"]]


def alert_exprs() -> list[str]:
    groups = yaml.safe_load((DEPLOY / "prometheus/alerts.yml").read_text())["groups"]
    return [r["expr"] for g in groups for r in g["rules"]]


def grafana_to_promql(expr: str) -> str:
    return expr.replace("$__rate_interval", "30s").replace('=~"$model_name"', '=~".*"')


def metric_names(exprs) -> set[str]:
    return {m for e in exprs for m in re.findall(r"\b(?:vllm:[a-z_:]+|mmgvid_[a-z_]+)", e)}


def run(cmd) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def prometheus(client, tmp_path_factory):
    if not (shutil.which("prometheus") and shutil.which("promtool")):
        pytest.skip("needs `prometheus` and `promtool` (Debian: apt-get install -y --no-install-recommends prometheus)")
    if client.api_servers != 1:
        pytest.skip("checked once, against the one-API-server instance")
    tmp = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((DEPLOY / "prometheus/prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(DEPLOY / "prometheus" / f) for f in config["rule_files"]]
    config["scrape_configs"][0]["static_configs"] = [{"targets": [f"{client.server.host}:{client.server.port}"]}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    run(["promtool", "check", "config", str(DEPLOY / "prometheus/prometheus.yml")])
    run(["promtool", "check", "rules", str(DEPLOY / "prometheus/alerts.yml")])
    run(["promtool", "check", "config", str(tmp / "prometheus.yml")])
    url = f"http://127.0.0.1:{free_port()}"
    log = open(tmp / "prometheus.log", "wb")
    proc = subprocess.Popen(
        ["prometheus", f"--config.file={tmp / 'prometheus.yml'}", f"--storage.tsdb.path={tmp / 'data'}",
         f"--web.listen-address={url[len('http://'):]}"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not _ok(url + "/-/ready"):
            assert proc.poll() is None and time.monotonic() < deadline, (tmp / "prometheus.log").read_text()[-3000:]
            time.sleep(0.5)
        time.sleep(3)  # a few scrapes before the traffic, so rates see it change
        for num_frames, retention in [(4, None), (5, 1.0)]:
            client.send(num_frames, retention)
        time.sleep(5)  # and a few after
        yield url
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()


def _ok(url: str) -> bool:
    try:
        return requests.get(url, timeout=2).status_code == 200
    except requests.RequestException:
        return False


def query(url: str, expr: str) -> list:
    r = requests.get(url + "/api/v1/query", params={"query": expr}, timeout=30)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}\n{body}"
    return body["data"]["result"]


def test_every_metric_in_dashboard_and_alerts_has_data(prometheus):
    names = metric_names(dashboard_exprs() + alert_exprs())
    assert {"mmgvid_video_kept_tokens_total", "vllm:time_to_first_token_seconds_bucket"} <= names
    missing = [n for n in sorted(names) if not query(prometheus, f'{{__name__="{n}"}}')]
    assert not missing, f"no data for {missing}"


def test_dashboard_queries_return_data(prometheus):
    empty = [e for e in dashboard_exprs() if not query(prometheus, grafana_to_promql(e))]
    assert not empty, f"empty results: {empty}"


def test_alert_rules_evaluate(prometheus):
    for expr in alert_exprs():
        query(prometheus, expr)  # valid PromQL against live data
    deadline = time.monotonic() + 20
    while True:  # every rule evaluated at least once without error
        groups = requests.get(prometheus + "/api/v1/rules", timeout=30).json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"]]
        if len(rules) == len(alert_exprs()) and all(r["health"] == "ok" for r in rules):
            break
        assert time.monotonic() < deadline, json.dumps(rules, indent=1)[:4000]
        time.sleep(1)
