"""The serving engines: choosing one, vLLM's command line, and the launcher's process care.

vLLM itself needs a CUDA GPU; here a stand-in ``vllm`` package on ``PYTHONPATH`` answers
``/health`` and writes down what it was started with, so the kit's side of the launch (the
arguments, the key kept off the command line, the stop of the whole process group) is real.
"""
import json
import os
import textwrap
import time

import pytest

from ftkit.core.config import ConfigError
from ftkit.deploy import engines
from ftkit.deploy import server as sv

FAKE_MAIN = '''
import http.server, json, os, subprocess, sys, time

def main():
    argv = sys.argv[1:]
    port = int(argv[argv.index("--port") + 1])
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
    with open(os.environ["FAKE_VLLM_RECORD"], "w") as f:
        json.dump({"argv": argv, "key": os.environ.get("VLLM_API_KEY"),
                   "helper": helper.pid}, f)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
'''


@pytest.fixture
def model_dir(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def adapter_dir(tmp_path, rank: int):
    folder = tmp_path / f"adapter-r{rank}"
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"r": rank}))
    (folder / "adapter_model.safetensors").write_bytes(b"")
    return folder


@pytest.fixture
def fake_vllm(tmp_path, monkeypatch):
    package = tmp_path / "fake" / "vllm" / "entrypoints" / "cli"
    package.mkdir(parents=True)
    for level in (package, package.parent, package.parent.parent):
        (level / "__init__.py").write_text("")
    (package / "main.py").write_text(textwrap.dedent(FAKE_MAIN))
    record = tmp_path / "record.json"
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(tmp_path / "fake"), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("FAKE_VLLM_RECORD", str(record))
    monkeypatch.setattr(engines, "vllm_available", lambda: True)
    return record


def test_resolve_picks_what_can_run(monkeypatch):
    monkeypatch.setattr(engines, "vllm_available", lambda: False)
    assert engines.resolve("auto") == "transformers"
    assert engines.resolve("transformers") == "transformers"
    with pytest.raises(ConfigError, match="engine 'vllm': needs the vllm package"):
        engines.resolve("vllm")
    with pytest.raises(ConfigError, match="choose one of auto, transformers, vllm"):
        engines.resolve("tgi")
    monkeypatch.setattr(engines, "vllm_available", lambda: True)
    assert engines.resolve("auto") == "vllm"


def test_vllm_arguments(tmp_path):
    args = engines.vllm_args("/m", "127.0.0.1", 8123, continuous_batching=False)
    assert args[:2] == ["serve", "/m"]
    assert args[args.index("--port") + 1] == "8123"
    assert args[args.index("--served-model-name") + 1] == "/m"
    assert args[args.index("--max-num-seqs") + 1] == "1"
    assert "--enable-lora" not in args and "--api-key" not in args
    batched = engines.vllm_args("/m", "127.0.0.1", 8123, adapter=str(adapter_dir(tmp_path, 12)))
    assert "--max-num-seqs" not in batched
    assert batched[batched.index("--lora-modules") + 1].startswith("adapter=")
    assert batched[batched.index("--max-lora-rank") + 1] == "16"
    assert engines.lora_rank(adapter_dir(tmp_path, 4)) == 8
    with pytest.raises(ConfigError, match="rank 1024 is over the largest"):
        engines.lora_rank(adapter_dir(tmp_path, 1024))
    with pytest.raises(ConfigError, match="gpu_memory 0"):
        engines.vllm_args("/m", "127.0.0.1", 1, gpu_memory=0)


def test_server_refuses_what_vllm_cannot_serve(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "vllm_available", lambda: False)
    with pytest.raises(ConfigError, match="needs the vllm package"):
        sv.Server(model_dir, engine="vllm")
    monkeypatch.setattr(engines, "vllm_available", lambda: True)
    with pytest.raises(ConfigError, match="served by engine 'transformers'"):
        sv.Server(model_dir, engine="vllm", weights="int8")
    plain = sv.Server(model_dir, engine="vllm")
    assert plain.model_name == str(model_dir) and plain.ready_timeout == 600.0
    over = sv.Server(model_dir, engine="vllm", adapter=adapter_dir(tmp_path, 8))
    assert over.model_name == engines.ADAPTER_NAME
    assert sv.Server(model_dir, adapter=adapter_dir(tmp_path, 4)).model_name == str(model_dir)


def test_vllm_launch_and_stop(model_dir, fake_vllm):
    server = sv.Server(model_dir, engine="auto", ready_timeout=60)
    assert server.engine == "vllm"
    with server:
        assert server.running
        started = json.loads(fake_vllm.read_text())
        assert started["argv"][:2] == ["serve", str(model_dir)]
        assert started["argv"][started["argv"].index("--max-num-seqs") + 1] == "1"
        assert started["key"] == server.key and server.key not in started["argv"]
        helper = started["helper"]
        os.kill(helper, 0)  # the engine's own child process is alive while serving
    assert not server.running and sv.port_is_free(server.port)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and alive(helper):
        time.sleep(0.1)
    assert not alive(helper)  # stopped with the server's process group


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has ended
    except FileNotFoundError:
        return False


def test_failed_vllm_start_shows_its_log(model_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(engines, "vllm_available", lambda: True)
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # no vllm anywhere: the child fails
    with pytest.raises(RuntimeError, match="No module named 'vllm'"):
        sv.Server(model_dir, engine="vllm", ready_timeout=60).start()
