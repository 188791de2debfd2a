"""GRPO: the task's checks, the rewards and their guard, pass@k, the speed layer's values and a
two-step run on a tiny model."""
import json
import math

import pytest
import torch

from ftkit.align import grpo
from ftkit.align.params import GRPOSettings
from ftkit.core.config import AdapterConfig, ConfigError
from ftkit.models.tiny import tiny_llama

ROW = {"message": "Where is order #12345? I paid 80 euros.", "category": "shipping",
       "order": "12345", "total": 80}
COLS = {k: [ROW[k]] for k in grpo.FIELDS}
RIGHT = '{"order": "12345", "total": 80}'


def test_parse_and_pass():
    assert grpo.parse_record("Sure: " + RIGHT + " bye") == json.loads(RIGHT)
    assert grpo.parse_record("no json here") is None and grpo.parse_record("{bad}") is None
    assert grpo.passes(RIGHT, ROW)
    assert grpo.passes('{"order": 12345, "total": 80}', ROW)
    assert not grpo.passes('{"order": "12345", "total": "80"}', ROW)
    assert not grpo.passes('{"order": "12345"}', ROW)
    assert not grpo.passes('{"order": "12345", "total": 80, "category": "shipping"}', ROW)
    nulls = {**ROW, "order": None, "total": None}
    assert grpo.passes('{"order": null, "total": null}', nulls)
    assert grpo.field_hits(None, ROW) == {"order": False, "total": False}


def test_rewards_pay_for_what_they_say():
    answers = [RIGHT, RIGHT + " Hope this helps!", RIGHT.replace("80", "12"),
               '{"x": 1}', "12345 80 null"]
    cols = {k: v * len(answers) for k, v in COLS.items()}
    assert grpo.valid_json(answers) == [1.0, 1.0, 1.0, 0.5, 0.0]
    assert grpo.exact_fields(answers, **cols) == pytest.approx([1, 1, 1 / 2, 0, 0])
    assert grpo.stops_after_record(answers) == [1.0, 0.0, 1.0, 1.0, 0.0]
    # the loophole: no record at all, yet every value "appears"
    assert grpo.loose_fields(answers, **cols)[-1] == 1.0
    listed = '{"order": "12345 80", "total": 80}'
    assert grpo.loose_fields([listed], **COLS) == [1.0] and not grpo.passes(listed, ROW)
    assert grpo.hacking_report([[listed, RIGHT]], [ROW])["extra_numbers"] == 0.5


def test_chat_completions_are_read_as_text():
    assert grpo.valid_json([[{"role": "assistant", "content": RIGHT}]]) == [1.0]


def test_checked_names_the_reward_and_the_prompt():
    def fussy(completions, order, **_):
        return [1.0 / (o is not None) for o in order]

    prompts = [grpo.prompt_of(ROW), grpo.prompt_of({**ROW, "message": "Charged twice!"})]
    wrapped = grpo.checked(fussy)
    assert wrapped(prompts=prompts[:1], completions=[RIGHT], order=["12345"]) == [1.0]
    with pytest.raises(grpo.RewardError, match=r"'fussy' raised ZeroDivisionError.*Charged twice"):
        wrapped(prompts=prompts, completions=[RIGHT, RIGHT], order=["12345", None])


@pytest.mark.parametrize("values, match", [
    (["high"], "'high'"), ([float("nan")], "nan"), ([True], "True"), ([1.0, 2.0], "one number"),
    ("1", "one number")])
def test_checked_refuses_non_numbers(values, match):
    def bad(completions, **_):
        return values

    with pytest.raises(grpo.RewardError, match=match):
        grpo.checked(bad)(prompts=[grpo.prompt_of(ROW)], completions=[RIGHT])


def test_checked_keeps_none_and_the_name():
    wrapped = grpo.checked(lambda completions, **_: [None, 1])
    assert wrapped(prompts=None, completions=["a", "b"]) == [None, 1.0]
    assert grpo.checked(grpo.valid_json).__name__ == "valid_json"


def test_reward_names_in_the_settings_are_the_built_in_ones():
    from ftkit.align.params import REWARD_NAMES

    assert tuple(grpo.REWARDS) == REWARD_NAMES
    with pytest.raises(ConfigError, match="unknown"):
        GRPOSettings(rewards=["valid_jsn"])


def test_rewards_by_name():
    assert [r.__name__ for r in grpo.rewards_by_name(["valid_json"])] == ["valid_json"]
    with pytest.raises(ConfigError, match="loose_field"):
        grpo.rewards_by_name(["loose_field"])


def test_pass_at_k():
    assert grpo.pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert grpo.pass_at_k(4, 1, 4) == 1.0 and grpo.pass_at_k(4, 0, 4) == 0.0
    assert grpo.pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))
    with pytest.raises(ConfigError, match="pass@5"):
        grpo.pass_at_k(4, 1, 5)


def test_settings_refuse_a_group_of_one_and_k_above_samples(tmp_path):
    with pytest.raises(ConfigError, match="group_size"):
        GRPOSettings(group_size=1)
    with pytest.raises(ConfigError, match="pass_k"):
        GRPOSettings(samples=2, pass_k=[4])
    with pytest.raises(ConfigError, match="rewards"):
        GRPOSettings(rewards=["valid_json", "valid_json"])
    args = grpo.grpo_arguments(GRPOSettings(group_size=3, prompts_per_step=2), str(tmp_path))
    assert args.num_generations == 3 and args.per_device_train_batch_size == 6
    assert not args.gradient_checkpointing and args.save_strategy == "no"


def test_load_records_names_the_bad_line(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps(ROW) + "\n" + json.dumps({"message": "hi", "category": "x"}) + "\n")
    with pytest.raises(ConfigError, match=r"line 2: missing \['order', 'total'\]"):
        grpo.load_records(path)
    with pytest.raises(ConfigError, match="make_extraction_tasks"):
        grpo.load_records(tmp_path / "none.jsonl")
    path.write_text(json.dumps(ROW) + "\n")
    assert grpo.load_records(path) == [ROW]


def test_completion_logps_match_full_logits(policy):
    model, _ = policy
    torch.manual_seed(0)
    ids = torch.randint(3, 50, (3, 12))
    mask = torch.ones_like(ids)
    mask[0, :2] = 0  # left padding
    logps, ent, _ = grpo.completion_logps(grpo._parts(model), ids, mask, 5, temperature=0.7,
                                          compute_entropy=True)
    with torch.no_grad():
        full = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits / 0.7, -1)
    want = full[:, -6:-1].gather(-1, ids[:, -5:, None]).squeeze(-1)
    assert torch.allclose(logps, want, atol=1e-5)
    assert torch.allclose(ent, -(full[:, -6:-1].exp() * full[:, -6:-1]).sum(-1), atol=1e-5)


def test_merged_adapter_gives_the_same_outputs_and_restores(policy):
    model, _ = policy
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    ids = torch.randint(3, 50, (2, 8))
    before = {n: p.clone() for n, p in model.named_parameters()}
    with torch.no_grad():
        plain = model(input_ids=ids).logits
        with grpo.merged_adapter(model):
            merged = model(input_ids=ids).logits
        after = model(input_ids=ids).logits
    assert torch.allclose(plain, merged, atol=1e-5) and torch.allclose(plain, after, atol=1e-6)
    for n, p in model.named_parameters():
        assert torch.allclose(p, before[n], atol=1e-6), n
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.zero_()


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    model, tok = tiny_llama()
    settings = GRPOSettings(grpo_steps=2, prompts_per_step=2, group_size=2, max_completion=6)
    rows = [ROW, {**ROW, "message": "I was charged twice.", "category": "billing",
                  "order": None, "total": None}]
    run = grpo.train_grpo(model, tok, AdapterConfig(lora_r=2, lora_dropout=0.0), settings, rows,
                          grpo.rewards_by_name(settings.rewards),
                          str(tmp_path_factory.mktemp("grpo")))
    return run, model, tok, rows


def test_train_grpo_logs_each_step_and_leaves_the_start_alone(tiny_run):
    run, start, _, _ = tiny_run
    assert [h["step"] for h in run.logs] == [1, 2] and run.prompts_seen == 4
    assert {"reward", "reward_std", "completions/mean_length"} <= set(run.logs[0])
    assert hasattr(run.model, "disable_adapter") and not hasattr(start, "disable_adapter")
    assert list(run.curves().index) == [1, 2]


def test_evaluate_policy_scores_greedy_and_samples(tiny_run):
    run, _, tok, rows = tiny_run
    row, answers = grpo.evaluate_policy(run.model, tok, rows, 3, [1, 3], max_new_tokens=4)
    assert [len(a) for a in answers] == [3, 3]
    assert {"pass@1", "pass@3", "valid_json", "order_acc", "kl_to_ref"} <= set(row)
    again, _ = grpo.evaluate_policy(run.model, tok, rows, 1, [1], max_new_tokens=4, kl=False)
    assert [a[0] for a in answers] == [a[0] for a in grpo.sample_answers(run.model, tok, rows, 1, 4)]
    assert again["kl_to_ref"] == 0.0


def test_train_grpo_refuses_a_peft_start_and_too_few_prompts(tiny_run, policy, tmp_path):
    _, start, tok, rows = tiny_run
    settings = GRPOSettings(grpo_steps=1, prompts_per_step=2, group_size=2)
    with pytest.raises(ConfigError, match="plain model"):
        grpo.train_grpo(policy[0], tok, AdapterConfig(), settings, rows, [], str(tmp_path))
    with pytest.raises(ConfigError, match="prompts_per_step"):
        grpo.train_grpo(start, tok, AdapterConfig(), settings, rows[:1], [], str(tmp_path))


def test_a_reward_that_raises_stops_training_naming_the_prompt(tiny_run, tmp_path):
    _, start, tok, rows = tiny_run

    def broken(completions, total, **_):
        return [1.0 / t for t in total]  # None for messages without an amount

    settings = GRPOSettings(grpo_steps=1, prompts_per_step=2, group_size=2, max_completion=4)
    with pytest.raises(grpo.RewardError, match="'broken' raised TypeError.*charged twice"):
        grpo.train_grpo(start, tok, AdapterConfig(lora_r=2), settings, rows,
                        [grpo.checked(broken)], str(tmp_path))


def test_rollouts_take_the_shared_prompt_path(tiny_run, tmp_path, monkeypatch):
    _, start, tok, rows = tiny_run
    calls = []
    real = grpo.generate_groups

    def counting(*args, **kwargs):
        out = real(*args, **kwargs)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(grpo, "generate_groups", counting)
    settings = GRPOSettings(grpo_steps=1, prompts_per_step=2, group_size=2, max_completion=4)
    grpo.train_grpo(start, tok, AdapterConfig(lora_r=2), settings, rows,
                    grpo.rewards_by_name(["valid_json"]), str(tmp_path))
    assert calls == [True]
