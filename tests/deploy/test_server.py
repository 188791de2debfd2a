"""A real OpenAI-compatible server on a tiny model: client, key, errors, load, clean stop."""
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

import openai
import pytest

from transformers import AutoModelForCausalLM

from ftkit.compress.quantization import weight_storage_mb
from ftkit.core.config import ConfigError
from ftkit.deploy import client as cl
from ftkit.deploy import server as sv
from ftkit.models.tiny import tiny_llama


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    model, tok = tiny_llama()
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def served(model_dir):
    server = sv.Server(model_dir).start()
    yield server
    server.stop()


def post(server, path: str, body: bytes, key: str | None) -> int:
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(server.url + path, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status
    except urllib.error.HTTPError as err:
        return err.code


def test_the_openai_client_gets_plain_and_streamed_answers(served):
    chat = cl.client(served)
    plain = cl.ask(chat, served.model, "Where is my parcel?", max_tokens=6)
    streamed = cl.ask(chat, served.model, "Where is my parcel?", max_tokens=6, stream=True)
    assert plain["tokens"] == 6 and isinstance(plain["answer"], str)
    assert streamed["answer"] == plain["answer"]  # greedy: the same text either way
    assert 0 < streamed["first_token_s"] <= streamed["seconds"]
    assert served.host == "127.0.0.1"


def test_a_missing_or_wrong_key_gets_401_and_health_stays_open(served):
    body = b'{"model": "m", "messages": [{"role": "user", "content": "hi"}]}'
    assert post(served, "/v1/chat/completions", body, None) == 401
    assert post(served, "/v1/chat/completions", body, "not-the-key") == 401
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=served.base_url, api_key="wrong", max_retries=0).models.list()
    with urllib.request.urlopen(served.url + "/health", timeout=5) as reply:
        assert reply.status == 200


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"messages": 3}',
                                  b'{"messages": [{"role": "user"}]}',
                                  b'{"messages": [{"role": "user", "content": "hi"}], '
                                  b'"max_tokens": -1}'])
def test_a_malformed_body_gets_400_and_the_server_stays_up(served, body):
    assert post(served, "/v1/chat/completions", body, served.key) == 400
    assert cl.ask(cl.client(served), served.model, "hi", max_tokens=2)["tokens"] == 2


def test_a_prompt_longer_than_the_context_gets_400(served):
    chat = cl.client(served)
    with pytest.raises(openai.BadRequestError, match="context"):
        cl.ask(chat, served.model, "parcel " * 400, max_tokens=8)  # tiny model: 256 positions
    assert cl.ask(chat, served.model, "hi", max_tokens=2)["tokens"] == 2


def test_the_load_generator_measures_every_request(served):
    frame = cl.load_test(served, served.model, ["hi", "Do you ship abroad?"], concurrency=2,
                         n_requests=6, max_tokens=4)
    summary = cl.summarise(frame)
    assert summary["requests"] == 6 and summary["errors"] == 0
    assert 0 < summary["p50_s"] <= summary["p95_s"] and summary["tokens_per_s"] > 0


def test_stopping_frees_the_port_and_a_stopped_server_is_reported_not_waited_on(model_dir):
    server = sv.Server(model_dir).start()
    assert not sv.port_is_free(server.port)
    server.stop()
    server.stop()  # twice is fine
    assert sv.port_is_free(server.port)
    t0 = time.perf_counter()
    frame = cl.load_test(server, server.model, ["hi"], n_requests=3, timeout=5)
    assert (frame.error != "").all() and time.perf_counter() - t0 < 10


def test_a_server_killed_mid_load_gives_failed_rows_not_a_hang(model_dir):
    server = sv.Server(model_dir).start()
    killer = threading.Timer(1.0, server.process.kill)
    killer.start()
    t0 = time.perf_counter()
    frame = cl.load_test(server, server.model, ["hi"], concurrency=2, n_requests=400,
                         max_tokens=16, timeout=5, max_seconds=30)
    killer.join()
    server.stop()
    assert (frame.error == "").any() and (frame.error != "").any()
    assert time.perf_counter() - t0 < 40 and cl.summarise(frame)["errors"] > 0


def test_the_server_exits_when_its_parent_dies(model_dir, tmp_path):
    """A kernel killed without stopping its server leaves no orphan behind."""
    script = (f"import sys; from ftkit.deploy import server as sv\n"
              f"s = sv.Server({str(model_dir)!r}).start()\n"
              f"print(s.port, s.process.pid, flush=True)\n"
              f"import os; os._exit(0)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    port = int(out[0])
    deadline = time.monotonic() + 15
    while not sv.port_is_free(port) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert sv.port_is_free(port)


def test_only_an_exported_model_folder_is_served(tmp_path):
    with pytest.raises(ConfigError, match="not a folder"):
        sv.Server(tmp_path / "missing")
    (tmp_path / "adapter_config.json").write_text("{}")
    with pytest.raises(ConfigError, match="needs config.json and safetensors"):
        sv.Server(tmp_path)
    with pytest.raises(ConfigError, match="API key is empty"):
        sv.Gate(None, "")


@pytest.fixture(scope="module")
def adapter_dir(model_dir, tmp_path_factory):
    import torch

    from ftkit.core.config import AdapterConfig
    from ftkit.train.adapters import apply_method

    model, _ = tiny_llama()
    model = apply_method(model, AdapterConfig(lora_r=2, lora_alpha=4.0, lora_dropout=0.0))
    with torch.no_grad():  # a trained adapter: B away from zero, so it changes the answers
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    merged = tmp_path_factory.mktemp("merged")
    model.merge_and_unload().save_pretrained(merged)
    tiny_llama()[1].save_pretrained(merged)
    return folder, merged


def test_an_unmerged_adapter_answers_as_its_merged_export(model_dir, adapter_dir):
    adapter, merged = adapter_dir
    answers = {}
    for name, kwargs in {"base": dict(model=model_dir), "merged": dict(model=merged),
                         "adapter": dict(model=model_dir, adapter=adapter)}.items():
        with sv.Server(**kwargs) as server:
            chat = cl.client(server)
            answers[name] = cl.ask(chat, server.model, "Where is my parcel?", max_tokens=8)
    assert answers["adapter"]["answer"] == answers["merged"]["answer"]
    assert answers["adapter"]["answer"] != answers["base"]["answer"], "the adapter is applied"


def test_weight_quantised_serving_answers_and_reports_its_memory(model_dir, served):
    as_saved = weight_storage_mb(AutoModelForCausalLM.from_pretrained(model_dir))
    assert served.weights_mb() == pytest.approx(as_saved, abs=0.1)
    with sv.Server(model_dir, weights="int8") as server:
        assert server.rss_mb() > 50
        # int8 values (a quarter of fp32's bytes) and one scale per row
        assert 0.2 * as_saved < server.weights_mb() < 0.4 * as_saved
        reply = cl.ask(cl.client(server), server.model, "Where is my parcel?", max_tokens=4)
        assert reply["tokens"] == 4
    with pytest.raises(RuntimeError, match="not running"):
        server.rss_mb()
    with pytest.raises(ConfigError, match="choose one of"):
        sv.Server(model_dir, weights="int3")
    with pytest.raises(ConfigError, match="adapter_config.json"):
        sv.Server(model_dir, adapter=model_dir)
