"""ftkit.data.clean, dedup and pii: every filter counts what it does; scores on known pairs."""
import datasets
import pytest

from ftkit.data import clean, dedup, pii, prep


def _ds(pairs):
    return datasets.Dataset.from_dict({"id": [f"r{i}" for i in range(len(pairs))],
                                       "instruction": [q for q, _ in pairs],
                                       "response": [a for _, a in pairs]})


Q = "I was charged twice for my coffee grinder order and need the second charge refunded now"
A = "Duplicate charges drop off within three days; otherwise we refund the second one."


def test_exact_dedup_ignores_case_whitespace_and_punctuation():
    ds = _ds([(Q, A), ("  " + Q.upper() + "!", A), (Q, A + " Thanks.")])
    out, step = clean.exact_dedup(ds)
    assert out["id"] == ["r0", "r2"]
    assert (step.rows_in, step.rows_out, step.removed) == (3, 2, 1)
    assert step.examples[0].startswith("  I WAS CHARGED")


def test_near_dedup_keeps_first_of_each_cluster_and_times_itself():
    edited = Q.replace("twice", "two times").replace("now", "please")
    other = "How do I turn off the marketing newsletters for the yoga mat I bought in May"
    ds = _ds([(Q, A), (other, A), (edited, A)])
    out, step = clean.near_dedup(ds, threshold=0.5)
    assert out["id"] == ["r0", "r1"] and step.removed == 1
    assert step.details["clusters"] == [0, 1, 0] and step.details["seconds"] >= 0


def test_minhash_estimate_tracks_exact_jaccard():
    a = dedup.shingles(Q)
    b = dedup.shingles(Q.replace("coffee", "pepper"))
    sigs = dedup.minhash_signatures([a, b], num_perm=256)
    assert abs((sigs[0] == sigs[1]).mean() - dedup.jaccard(a, b)) < 0.1
    assert dedup.jaccard(a, a) == 1.0 and dedup.jaccard(set(), set()) == 1.0


def test_lsh_needs_num_perm_multiple_of_bands():
    with pytest.raises(ValueError, match="multiple of bands"):
        dedup.near_duplicate_pairs([Q, Q], num_perm=100, bands=32)


def test_pair_scores_against_families():
    scores = dedup.pair_scores([0, 0, 2, 2], ["a", "a", "a", "b"])
    # predicted pairs {(0,1), (2,3)}; true pairs {(0,1), (0,2), (1,2)}
    assert scores == {"true_pairs": 3, "found_pairs": 2, "precision": 0.5, "recall": 1 / 3}


def test_clusters_are_transitive():
    assert dedup.clusters_from_pairs(5, {(0, 3), (3, 4)}) == [0, 1, 2, 0, 0]


def test_length_filter_counts_short_and_long():
    ds = _ds([(Q, A), ("help", "ok"), (Q, A + " word" * 300)])
    out, step = clean.length_filter(ds, min_words=3, max_words=100)
    assert out["id"] == ["r0"] and step.removed == 2


def test_mojibake_is_repaired_and_counted():
    garbled = "I can’t find the café table".encode("utf-8").decode("cp1252")
    assert clean.fix_mojibake(garbled) == "I can’t find the café table"
    assert clean.fix_mojibake("plain text") == "plain text"
    out, step = clean.repair_mojibake(_ds([(garbled, A), (Q, A)]))
    assert out["instruction"][0] == "I can’t find the café table"
    assert (step.removed, step.changed) == (0, 1)
    assert out.column_names == ["id", "instruction", "response"]


@pytest.mark.parametrize("text, reason", [
    (Q + " " + A, None),
    ("¿Dónde está mi pedido? Lo compré hace una semana.", "few English stop words"),
    ("Wo ist meine Bestellung? Ich warte seit zehn Tagen.", "few English stop words"),
    ("qwrtz pslkd fghjk xcvbn mnbvc", "few English stop words"),
    ("#### $$$$ %%%% 1234 !!!!", "few letters"),
    ("Где мой заказ? Я жду уже неделю.", "non-ASCII letters"),
])
def test_language_heuristic(text, reason):
    assert clean.language_reason(text) == reason


def test_language_filter_reports_reasons():
    out, step = clean.language_filter(_ds([(Q, A), ("qwrtz pslkd fghjk", "xcvbn mnbvc")]))
    assert len(out) == 1 and step.details["reasons"] == {"few English stop words": 1}


def test_clean_all_builds_a_report_with_the_funnel():
    ds = _ds([(Q, A), (Q, A), ("hi", "ok"), ("Call Maria Lopez on 415-555-0134", A)])
    out, report = clean.clean_all(ds)
    table = report.table()
    assert list(table.index) == list(clean.STEPS)
    assert report.funnel()["raw"] == 4 and report.funnel()["PII redaction"] == len(out) == 2
    assert report.steps[-1].details["counts"]["phone"] == 1
    assert "[NAME]" in out["instruction"][1] and "[PHONE]" in out["instruction"][1]
    assert set(report.inputs) == set(clean.STEPS)


@pytest.mark.parametrize("number, ok", [("4539 1488 0343 6467", True), ("4539148803436468", False),
                                        ("79927398713", False), ("4111-1111-1111-1111", True)])
def test_luhn(number, ok):
    assert pii.luhn_ok(number) is ok


def test_redaction_per_type_and_luhn_invalid_numbers_are_kept():
    text = ("I am Priya Patel, mail priya.patel7@example.com, phone (415) 555-0134 or "
            "+44 20 7946 0958. Card 4539 1488 0343 6467, tracking 4539 1488 0343 6468, "
            "order #42108.")
    out, found = pii.redact(text)
    assert out == ("I am [NAME], mail [EMAIL], phone [PHONE] or [PHONE]. Card [CARD], tracking "
                   "4539 1488 0343 6468, order #42108.")
    assert found["card_like_kept"] == ["4539 1488 0343 6468"]
    assert pii.find_pii(text) == {"email": 1, "card": 1, "phone": 2, "name": 1}
    assert pii.find_pii("Nothing personal here, order #12345 on 2024-05-01.") == {}


def test_redact_texts_counts_and_examples():
    texts, counts, examples = pii.redact_texts(["Hi Emma,", "no pii", "mail a.b@example.org"])
    assert texts == ["Hi [NAME],", "no pii", "mail [EMAIL]"]
    assert counts["name"] == 1 and counts["email"] == 1 and len(examples) == 2


def test_names_outside_the_list_are_caught_by_their_cue_and_only_there():
    assert not pii.listed_name("Tendai Mensah") and pii.listed_name("Priya Patel")
    out, found = pii.redact("My name is Tendai Mensah, reply to Tendai please. Hi Saoirse, "
                            "this is the tracking page.")
    assert out == ("My name is [NAME], reply to Tendai please. Hi [NAME], this is the "
                   "tracking page.")
    assert found["name_in_context"] == ["Tendai Mensah", "Saoirse"] and found["name"] == []
    # a listed name is taken by the list first, not counted twice
    assert pii.find_pii("I am Priya Patel.") == {"name": 1}


def test_pii_left_counts_unlisted_names_apart():
    truth = {"a": {"pii": [["name", "Tendai Mensah"], ["name", "Emma Brown"]]}}
    left = prep.pii_left({"id": ["a"], "instruction": ["hello Tendai Mensah"],
                          "response": ["ok"]}, truth)
    assert left == {"name (not in list)": {"inserted": 1, "left": 1},
                    "name": {"inserted": 1, "left": 0}}
