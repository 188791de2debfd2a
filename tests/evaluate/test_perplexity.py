"""Per-example NLL and the bootstrapped perplexity table."""
import math

import numpy as np
import pandas as pd
import pytest

from ftkit.core.config import ConfigError
from ftkit.evaluate import perplexity


def test_token_nll_matches_perplexity_and_scores_only_completions(policy):
    model, tok = policy
    texts = ["the cat sat on the mat", "a dog ran in the park today"]
    table = perplexity.token_nll(model, tok, texts)
    whole = math.exp(table.nll.sum() / table.tokens.sum())
    assert whole == pytest.approx(perplexity.perplexity(model, tok, texts), rel=1e-4)
    pairs = perplexity.token_nll(model, tok, ["question one", "question two"], ["yes", "no no"])
    assert (pairs.tokens < table.tokens).all()  # the prompt is not scored


def test_the_table_gives_paired_ratios_with_intervals():
    rng = np.random.default_rng(0)
    base = pd.DataFrame({"nll": rng.uniform(20, 30, 40), "tokens": np.full(40, 10)})
    tuned = base.assign(nll=base.nll * 0.5)
    table = perplexity.perplexity_table({("base", "d"): base, ("tuned", "d"): tuned}, "base",
                                        n_boot=200)
    row = table.loc[("d", "tuned")]
    assert row.ratio < 1 and row.ratio_low <= row.ratio <= row.ratio_high
    assert row.ppl_low <= row.perplexity <= row.ppl_high
    assert table.loc[("d", "base")].ratio == pytest.approx(1.0)


def test_mismatched_or_empty_sets_are_refused(policy):
    base = pd.DataFrame({"nll": [1.0, 2.0], "tokens": [2, 2]})
    with pytest.raises(ConfigError, match="different examples"):
        perplexity.perplexity_table({("base", "d"): base, ("x", "d"): base.iloc[:1]}, "base")
    with pytest.raises(ConfigError, match="no texts"):
        perplexity.token_nll(*policy, [])
