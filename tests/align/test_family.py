"""The preference family: every method trains through TRL on a tiny model and returns the same
result; the loss each one starts from pins which loss actually ran; unpaired KTO rows; the
table and figure; refusals."""
import math
import random

import pandas as pd
import pytest

from ftkit.align import family
from ftkit.align.params import METHOD_NAMES, FamilySettings
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.data import preferences
from ftkit.models.tiny import tiny_llama

PAIRS = [{"prompt": f"Capital of {c}?", "chosen": a, "rejected": "Rome."}
         for c, a in [("France", "Paris."), ("Spain", "Madrid."), ("Peru", "Lima."),
                      ("Chile", "Santiago.")]]
TRAIN = TrainConfig(lr=1e-3, max_steps=2, batch_size=2, bf16=False)
ADAPTER = AdapterConfig(lora_r=2, lora_alpha=4.0)
BETA = 0.1


def test_the_methods_are_the_parameters_choices():
    assert tuple(family.METHODS) == METHOD_NAMES
    assert set(family.NEEDS_REFERENCE) == set(family.PATH) == set(METHOD_NAMES)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("family")
    return {m: fn(PAIRS, "tiny-llama", ADAPTER, TRAIN, str(out / m), BETA, seed=1,
                  max_length=32) for m, fn in family.METHODS.items()}


@pytest.mark.parametrize("method", METHOD_NAMES)
def test_each_method_returns_the_same_result(runs, method):
    run = runs[method]
    assert isinstance(run, family.PreferenceRun) and run.method == method
    assert set(run.cost) == {"seconds_per_step", "train_seconds", "peak_memory_mb",
                             "final_loss", "needs_reference", "chosen_reward"}
    assert run.cost["seconds_per_step"] > 0 and math.isfinite(run.cost["final_loss"])
    assert run.cost["needs_reference"] is family.NEEDS_REFERENCE[method]
    assert len(run.logs) == TRAIN.max_steps and not run.model.training
    assert hasattr(run.model, "disable_adapter"), "a LoRA model: its base is the reference"


def test_the_first_loss_shows_which_loss_ran(runs):
    """Before any update the policy equals its reference (LoRA's B starts at zero), so each
    reference-based loss starts at its textbook value: DPO log 2, IPO (1/(2β))², KTO 1-σ(0)."""
    first = {m: r.logs[0]["loss"] for m, r in runs.items()}
    assert first["dpo"] == pytest.approx(math.log(2), abs=1e-4)
    assert first["ipo"] == pytest.approx((1 / (2 * BETA)) ** 2, rel=1e-4)
    assert first["kto"] == pytest.approx(0.5, abs=1e-4)
    # the reference-free losses compare the policy with itself, not with a reference: they do
    # not start at those values
    assert abs(first["simpo"] - math.log(2)) > 1e-3 and abs(first["orpo"] - math.log(2)) > 1e-3


def test_dpo_with_an_nll_term_starts_above_log_2_by_that_term(runs, tmp_path):
    """At the first step the policy is its reference, so the DPO part is log 2 and the rest of
    the loss is the NLL term: weight × the chosen replies' mean token NLL (> 0)."""
    w = 0.5
    run = family.train_dpo(PAIRS, "tiny-llama", ADAPTER, TRAIN, str(tmp_path), BETA, seed=1,
                           max_length=32, nll_weight=w)
    first = run.logs[0]
    nll = -first["logps/chosen"]  # TRL logs each chosen reply's summed log-prob (batch mean)
    assert first["loss"] > math.log(2) + 1e-3, "the NLL term is in the loss"
    assert first["rewards/chosen"] == pytest.approx(0.0, abs=1e-5)
    assert (first["loss"] - math.log(2)) / w < nll, "a per-token mean is below the sum"
    assert math.isfinite(run.cost["chosen_reward"])
    assert runs["dpo"].logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-4), "0 = plain"


def test_kto_rows_are_the_pairs_unpaired():
    ds = preferences.kto_dataset(PAIRS, random.Random(0))
    assert len(ds) == 2 * len(PAIRS) and sum(ds["label"]) == len(PAIRS)
    good = {(r["prompt"][0]["content"], r["completion"][0]["content"]) for r in ds if r["label"]}
    assert good == {(p["prompt"], p["chosen"]) for p in PAIRS}
    again = preferences.kto_dataset(PAIRS, random.Random(0))
    assert ds["completion"] == again["completion"], "seeded shuffle"
    with pytest.raises(ConfigError, match="row 1: missing field"):
        preferences.kto_dataset([PAIRS[0], {"prompt": "q", "chosen": "a"}])


def test_too_few_pairs_for_a_batch_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="batch_size = 2 is larger than the preference set"):
        family.train_simpo(PAIRS[:1], "tiny-llama", ADAPTER, TRAIN, str(tmp_path))


def test_compare_reuses_done_rows_and_refuses_unknown_methods(tmp_path):
    model, tok = tiny_llama()
    rows = [{**p, "answer": p["chosen"].rstrip("."), "max_words": 1} for p in PAIRS]
    with pytest.raises(ValueError, match="unknown preference method"):
        family.compare(["dpo", "rpo"], rows, "tiny-llama", ADAPTER, TRAIN, BETA,
                       FamilySettings(), tok, rows, [], 2, 4, str(tmp_path))
    done = {"dpo": ({"win_rate": 0.75, "seconds_per_step": 1.0}, ["a"] * 4)}
    ref = [{"score": 0}] * 4
    table, replies = family.compare(["dpo", "orpo"], rows, "tiny-llama", ADAPTER, TRAIN, BETA,
                                    FamilySettings(), tok, rows, ref, 2, 4, str(tmp_path),
                                    done=done)
    assert [r["method"] for r in table] == ["dpo", "orpo"] and table[0]["win_rate"] == 0.75
    assert replies["dpo"] == ["a"] * 4 and len(replies["orpo"]) == 4
    orpo = table[1]
    assert not orpo["needs_reference"] and orpo["kl_to_ref"] >= 0 and orpo["data"] == "pairs"
    fig = family.plot_family(pd.DataFrame([{**orpo, "method": m, "needs_reference": m == "dpo"}
                                           for m in ("dpo", "orpo")]).set_index("method"))
    assert len(fig.axes) == 2


@pytest.mark.parametrize("bad, match", [
    ({"methods": ["dpo", "ipo"]}, "DPO is always trained"),
    ({"methods": ["ipo", "ipo"]}, "name each method once"),
    ({"methods": ["ipo", "cpo"]}, r"\['cpo'\] unknown"),
    ({"simpo_beta": 0}, "simpo_beta"),
])
def test_family_settings_refuse_bad_values(bad, match):
    with pytest.raises(ConfigError, match=match):
        FamilySettings(**bad)
