"""ftkit.data.prep and figures: config section, ground-truth measurements, figures."""
import datasets
import numpy as np
import pytest

from ftkit import models
from ftkit.core.config import Config, ConfigError, RunConfig
from ftkit.data import figures, prep
from ftkit.models.tiny import tiny_bpe_tokenizer


def test_prep_section_is_validated():
    cfg = Config.from_params({"dedup_threshold": 0.6, "n_synthetic": 2},
                             {"run": RunConfig, "prep": prep.PrepConfig})
    assert cfg.prep.dedup_threshold == 0.6 and cfg.prep.n_synthetic == 2
    with pytest.raises(ConfigError, match="dedup_threshold"):
        prep.PrepConfig(dedup_threshold=1.5)
    with pytest.raises(ConfigError, match="twice min_words"):
        prep.PrepConfig(min_words=10, max_words=15)
    opts = prep.cleaning_options(prep.PrepConfig())
    assert opts["near duplicates"] == {"threshold": 0.5}


def test_data_folder_resolves_from_repo_root_or_explains(tmp_path):
    assert (prep.data_folder("data/support_records") / "tickets.csv").exists()
    with pytest.raises(FileNotFoundError, match="make_support_records"):
        prep.data_folder(str(tmp_path))


def test_pii_left_counts_values_still_present():
    truth = {"a": {"pii": [["email", "x@example.com"], ["name", "Emma"]]}, "b": {"pii": []}}
    ds = datasets.Dataset.from_dict({"id": ["a", "b"], "instruction": ["mail [EMAIL]", "hi"],
                                     "response": ["Hi Emma,", "ok"]})
    assert prep.pii_left(ds, truth) == {"email": {"inserted": 1, "left": 0},
                                        "name": {"inserted": 1, "left": 1}}


TEXTS = ["I was charged twice for my coffee grinder order and need the second charge refunded",
         "I was charged twice for my coffee grinder order and need the second charge refunded now",
         "How do I turn off the marketing newsletters for the yoga mat I bought in May",
         "How do I turn off all the marketing newsletters for the yoga mat I bought in May",
         "The app crashes whenever I open the laptop stand page on my old tablet"] * 1


def test_near_dup_quality_and_leakage_on_known_families():
    families = ["a", "a", "b", "b", "c"]
    table = prep.near_dup_quality(TEXTS, families, [0.5])
    assert table.loc[0.5, "precision"] == 1.0 and table.loc[0.5, "recall"] == 1.0
    leak = prep.leakage_table(TEXTS * 4, [f + str(i // 5) for i, f in enumerate(families * 4)],
                              0.5, 0.4, seed=0)
    assert leak["group split"] == 0.0 and 0 <= leak["random split"] <= 1


def test_augmentation_similarity_table():
    rows = [{"source": 0, "method": "typo", "text": TEXTS[0].replace("charged", "chraged")},
            {"source": 2, "method": "dropout", "text": TEXTS[2].replace(" off", "")}]
    table = prep.augmentation_similarity(models.load("tiny-bert"), TEXTS, rows)
    assert list(table.index) == ["typo", "dropout"]
    assert (table["jaccard"] < 1).all() and (table["cosine"] <= 1.0 + 1e-6).all()


def test_training_pairs():
    ds = prep.training_pairs(tiny_bpe_tokenizer(), ["Q?"], ["A."], "paper")
    assert ds.to_list() == [{"prompt": "###Human: Q?\n###Assistant:", "completion": " A."}]


def test_figures_draw():
    fig = figures.funnel({"collected": 10, "validated": 8, "clean": 5})
    assert len(fig.axes[0].patches) == 3
    fig2 = figures.token_histogram({"chat": np.array([10, 20, 700])}, limit=512)
    assert "limit 512" in [t.get_text() for t in fig2.axes[0].get_legend().get_texts()]
