"""The running example: the online shop's customer-support assistant, as far as it has got.

The stage notebooks follow one product. Notebook 01 turns the shop's raw support records into
training data; notebook 05 fine-tunes the assistant on them; the later stages evaluate,
compress, serve and monitor that same assistant. So that every notebook still runs alone and
in any order, the package builds each stage's result itself, the same way every time:

- :func:`records` — the support records after notebook 01's pipeline (collect the four
  files, validate, clean, deduplicate, redact PII) and a split stratified by category;
- :func:`fine_tuned` — a LoRA adapter on the profile's model, trained on those records.

Both are cached under ``<ftkit cache>/assistant/<key>``, where the key hashes the data files,
the recipe (:class:`Recipe`, chosen by profile) and the code that builds it, so a notebook
that runs after 05 reuses 05's assistant and a change to any of the three builds a new one.
A cache entry is written to a temporary folder and renamed when complete.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from ftkit import models
from ftkit.core import env
from ftkit.core.config import AdapterConfig, ConfigError, TrainConfig
from ftkit.core.files import exclusive
from ftkit.data import clean, load, prep, split, validate
from ftkit.data.formatting import pairs_dataset
from ftkit.data.params import PrepConfig
from ftkit.models.generation import chat_batch
from ftkit.models.packs.core import cache_root
from ftkit.train import adapters, sft

DATA_DIR = "data/support_records"
# the data recipe of notebook 01's defaults, the same for every profile
DATA_TOKENIZER, DATA_MAX_TOKENS, EVAL_FRACTION = "smollm2-135m", 512, 0.2
CODE = [Path(__file__), *sorted(Path(clean.__file__).parent.glob("*.py")),
        Path(sft.__file__), Path(adapters.__file__)]


@dataclass(frozen=True)
class Recipe:
    """How the assistant is made for one profile: model, split, adapter, training budget."""
    model_name: str
    max_length: int = 512
    train_rows: int = 0  # 0: every training record
    lora_r: int = 8
    lr: float = 1e-3
    max_steps: int = 30
    batch_size: int = 4
    eval_rows: int = 32


RECIPES = {
    "smoke": Recipe("tiny-llama", max_length=256, train_rows=32, lora_r=4, max_steps=4,
                    batch_size=4, eval_rows=8),
    "workshop": Recipe("smollm2-135m"),
    "gpu": Recipe("HuggingFaceTB/SmolLM2-360M-Instruct", max_steps=200, batch_size=16,
                  eval_rows=120),  # from the hub or its cache
}


def recipe_for(profile: str) -> Recipe:
    """The recipe of ``profile``; an unknown profile is refused with the known ones."""
    try:
        return RECIPES[profile]
    except KeyError:
        raise ConfigError(f"profile {profile!r} has no assistant recipe; choose one of "
                          f"{sorted(RECIPES)}") from None


def _digest(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in paths:
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def cache_key(stage: str, recipe: Recipe | None, seed: int, data_dir: str = DATA_DIR) -> str:
    """Hash of the stage, its data files, the recipe, the seed and the code that builds it."""
    folder = prep.data_folder(data_dir)
    parts = {"stage": stage, "recipe": recipe and dataclasses.asdict(recipe), "seed": seed,
             "prep": dataclasses.asdict(PrepConfig()),
             "data_recipe": [DATA_TOKENIZER, DATA_MAX_TOKENS, EVAL_FRACTION],
             "data": _digest(sorted(p for p in folder.iterdir() if p.is_file())),
             "code": _digest(CODE)}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def publish(build_into, final: Path) -> Path:
    """Build into a temporary sibling folder, then rename it to ``final`` (all or nothing).

    Under an exclusive lock on ``final`` (``ftkit.core.files``): when another process built
    it meanwhile, it is reused and ``build_into`` is not called."""
    final = Path(final)
    with exclusive(final):
        if final.is_dir():
            return final
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}-", dir=final.parent))
        try:
            build_into(tmp)
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def collect(data_dir: str = DATA_DIR) -> datasets.Dataset:
    """The four export files of the shop, concatenated (notebook 01, section 1)."""
    folder = prep.data_folder(data_dir)
    return load.collect({
        "csv": load.load_csv(folder / "tickets.csv", on_bad="replace"),
        "jsonl": load.load_jsonl(folder / "tickets.jsonl"),
        "parquet": load.load_parquet(folder / "tickets.parquet"),
        "sqlite": load.load_sql("SELECT id, instruction, response, category FROM tickets",
                                folder / "tickets.sqlite")})


def prepare(raw: datasets.Dataset, tokenizer, seed: int, prep_cfg: PrepConfig | None = None,
            max_tokens: int = DATA_MAX_TOKENS,
            eval_fraction: float = EVAL_FRACTION) -> datasets.DatasetDict:
    """Validate, clean (notebook 01's steps) and split stratified by category."""
    valid, _ = validate.validate(raw, prep.SCHEMA, tokenizer, max_tokens)
    cleaned, _ = clean.clean_all(valid, prep.cleaning_options(prep_cfg or PrepConfig()))
    train_idx, test_idx = split.split(len(cleaned), "stratified", test_size=eval_fraction,
                                      seed=seed, labels=cleaned["category"])
    keep = ["id", "instruction", "response", "category"]
    cleaned = cleaned.select_columns(keep)
    return datasets.DatasetDict(train=cleaned.select(train_idx), test=cleaned.select(test_idx))


def records(seed: int = 42, data_dir: str = DATA_DIR) -> datasets.DatasetDict:
    """The assistant's training and test records, built once and cached. The same for every
    profile: notebook 01's default recipe (lengths counted with the SmolLM2 tokenizer)."""
    final = cache_root() / "assistant" / cache_key("records", None, seed, data_dir)
    if not final.is_dir():
        tokenizer = models.load_tokenizer(DATA_TOKENIZER)
        built = prepare(collect(data_dir), tokenizer, seed)
        publish(lambda tmp: built.save_to_disk(str(tmp / "records")), final)
    return datasets.load_from_disk(str(final / "records"))


@dataclass
class Assistant:
    """The fine-tuned assistant: its model (base + LoRA), tokenizer, records and how it was
    made (``info``: recipe, key, eval loss before and after, training seconds)."""
    model: Any
    tokenizer: Any
    records: datasets.DatasetDict
    info: dict

    def reply(self, questions: list[str], max_new_tokens: int = 48) -> list[str]:
        """Greedy replies to customers' questions."""
        return chat_batch(self.model, self.tokenizer, questions, max_new_tokens)


def fitting(rows: datasets.Dataset, tokenizer, max_length: int, limit: int = 0,
            seed: int = 0) -> datasets.Dataset:
    """Rows whose question and answer fit ``max_length`` tokens with room for the chat
    template, in a seeded order, at most ``limit`` of them (0: all)."""
    order = rows.shuffle(seed=seed)
    lengths = [len(tokenizer(f"{q} {a}")["input_ids"]) for q, a in
               zip(order["instruction"], order["response"])]
    keep = [i for i, n in enumerate(lengths) if n <= max_length - 48]
    return order.select(keep[:limit] if limit else keep)


def _train(recipe: Recipe, data: datasets.DatasetDict, seed: int, folder: Path,
           extra: tuple[list[str], list[str]] | None = None) -> None:
    env.seed_everything(seed)
    model, tokenizer = models.load(recipe.model_name)
    model = adapters.apply_method(model, AdapterConfig(peft_method="lora", lora_r=recipe.lora_r,
                                                       lora_alpha=2.0 * recipe.lora_r))
    model.config.use_cache = False
    train = fitting(data["train"], tokenizer, recipe.max_length, recipe.train_rows, seed)
    if extra:  # more pairs mixed into the records (e.g. refusals), in a seeded order
        more = datasets.Dataset.from_dict({"instruction": list(extra[0]),
                                           "response": list(extra[1])})
        train = datasets.concatenate_datasets(
            [train.select_columns(["instruction", "response"]), more]).shuffle(seed=seed)
    test = fitting(data["test"], tokenizer, recipe.max_length, recipe.eval_rows, seed)
    train_ds = pairs_dataset(tokenizer, train["instruction"], train["response"],
                             recipe.max_length)
    eval_ds = pairs_dataset(tokenizer, test["instruction"], test["response"], recipe.max_length)
    cfg = TrainConfig(lr=recipe.lr, max_steps=recipe.max_steps, batch_size=recipe.batch_size,
                      warmup_ratio=0.1, eval_steps=max(1, recipe.max_steps // 2),
                      lr_scheduler="cosine")
    trainer = sft.make_trainer(model, tokenizer, train_ds, eval_ds, cfg, str(folder / "run"),
                               seed, title="the shop's support assistant")
    before = trainer.evaluate()["eval_loss"]
    t0 = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t0
    after = trainer.evaluate()["eval_loss"]
    sft.unwrap(trainer).save_pretrained(str(folder / "adapter"))
    info = {"recipe": dataclasses.asdict(recipe), "seed": seed, "train_rows": len(train_ds),
            "extra_rows": len(extra[0]) if extra else 0,
            "eval_rows": len(eval_ds), "eval_loss_before": before, "eval_loss_after": after,
            "train_seconds": round(seconds, 1)}
    (folder / "info.json").write_text(json.dumps(info, indent=1), encoding="utf-8")


def fine_tuned(profile: str = "workshop", seed: int = 42, data_dir: str = DATA_DIR,
               extra: tuple[list[str], list[str]] | None = None) -> Assistant:
    """The assistant fine-tuned on :func:`records` with the profile's recipe (notebook 05).

    Trained once per key (a few minutes on the workshop profile, on 2 cores) and then loaded
    from the cache: base model + the saved LoRA adapter (safetensors). ``extra``: more
    (prompt, response) pairs mixed into the training records (a variant, e.g. the
    safety-tuned assistant of notebook 13, with refusals); its own cache key.
    """
    from peft import PeftModel

    recipe = recipe_for(profile)
    data = records(seed, data_dir)
    if extra is not None and (len(extra[0]) != len(extra[1]) or not extra[0]):
        raise ConfigError(f"extra pairs: {len(extra[0])} prompts and {len(extra[1])} responses; "
                          "need the same, non-zero number")
    stage = "fine_tuned" if not extra else "fine_tuned+" + hashlib.sha256(
        json.dumps([list(extra[0]), list(extra[1])]).encode()).hexdigest()[:16]
    key = cache_key(stage, recipe, seed, data_dir)
    final = cache_root() / "assistant" / key
    if not final.is_dir():
        publish(lambda tmp: _train(recipe, data, seed, tmp, extra), final)
    base, tokenizer = models.load(recipe.model_name)
    model = PeftModel.from_pretrained(base, str(final / "adapter")).eval()
    info = {**json.loads((final / "info.json").read_text(encoding="utf-8")), "key": key,
            "folder": str(final)}
    return Assistant(model, tokenizer, data, info)


__all__ = ["Assistant", "RECIPES", "Recipe", "cache_key", "collect", "fine_tuned", "prepare", "publish",
           "recipe_for", "records"]
