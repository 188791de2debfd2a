"""Generate the raw, messy customer-support instruction data set used by notebook 01.

Every record is an (instruction, response, category) triple about an imaginary online shop.
Clean records are composed from small parts (opener, question, detail; acknowledgement,
answer, extra, closing) so that two distinct records rarely share long word sequences. Then the
script adds the problems a real export has, each with a known ground truth:

- ``exact_dup``: a copy that differs only in case and whitespace;
- ``near_dup``: a copy with one to three small edits (word swap, dropped word, typo, new opener);
- ``too_short`` / ``too_long``: one-word questions, answers of several hundred words;
- ``non_english``, ``gibberish``: language noise; ``mojibake``: UTF-8 text decoded as cp1252;
- PII inside clean records: customer names, e-mails, phone numbers, Luhn-valid card numbers
  (and Luhn-invalid 16-digit tracking numbers, which are not PII);
- bad rows: empty text, missing values, wrong types (numbers in text columns, JSONL and SQLite
  only), labels outside the label set, bytes that are not UTF-8 (CSV only).

The records are shuffled and split across four files (CSV, JSONL, Parquet, SQLite) so that
collection from each format can be shown; ``ground_truth.jsonl`` holds each record's kind, its
duplicate family and the PII values inserted. Run from the repository root::

    python data/make_support_records.py --seed 7 --out data/support_records

Used in notebooks/01_data_preparation.ipynb (paper §3.1-3.2).
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import random
import sqlite3
from pathlib import Path

CATEGORIES = ["billing", "shipping", "returns", "account", "technical"]
PRODUCTS = ["wireless headphones", "coffee grinder", "yoga mat", "desk lamp", "rain jacket",
            "phone case", "blender", "backpack", "smart watch", "kettle", "hiking boots",
            "laptop stand", "air fryer", "bike helmet", "water bottle", "office chair",
            "board game", "electric toothbrush", "wool scarf", "bluetooth speaker"]

# (question, answer) per category; slots: {product}, {order}, {days}, {amount}
TEMPLATES = {
    "billing": [
        ("I was charged twice for my {product} order {order}.",
         "Duplicate charges are usually a pending authorisation that drops off within {days} "
         "business days; if both charges settle we refund the second one automatically."),
        ("Why does my invoice for order {order} show {amount} instead of the sale price?",
         "The sale price applies at checkout only when the promotion code is entered, so we "
         "have issued a credit for the difference to your original payment method."),
        ("Can I change the payment method on order {order} before it ships?",
         "Payment methods cannot be edited after checkout, but you can cancel within one hour "
         "and place the order again with the card you prefer."),
        ("I never received a receipt for the {product} I bought last week.",
         "Receipts are sent to the address on your account; you can also download a copy from "
         "the order history page under Billing."),
        ("Do you offer monthly instalments for a purchase of {amount}?",
         "Instalment plans are available for baskets above 100 euros and are chosen on the "
         "payment step, with no interest for up to {days} months."),
    ],
    "shipping": [
        ("Where is my {product}? Order {order} still says processing.",
         "Orders stay in processing while the warehouse picks the items; yours is scheduled to "
         "leave within {days} days and you will get a tracking link by e-mail."),
        ("Can you ship the {product} to a different address than my billing one?",
         "Yes, add a separate delivery address at checkout; for an order already placed we can "
         "update it only until the parcel is handed to the courier."),
        ("My tracking page for order {order} has not updated in {days} days.",
         "Courier scans can pause during transit hubs; if nothing changes in two more days we "
         "will open an investigation and send a replacement."),
        ("Do you deliver the {product} on Saturdays?",
         "Saturday delivery is offered in most cities for a small fee, selectable on the "
         "delivery step when the postcode supports it."),
        ("The courier left my {product} at the wrong house.",
         "Please check with neighbours first; we will contact the courier for the delivery "
         "photo and reship the item if it cannot be found within {days} days."),
    ],
    "returns": [
        ("How do I return the {product} from order {order}?",
         "Start the return from your order history, print the prepaid label and drop the parcel "
         "at any partner point within {days} days of delivery."),
        ("The {product} arrived damaged, can I get a replacement?",
         "We are sorry it arrived broken; send us a photo of the damage and we will ship a "
         "replacement at no cost, no need to return the damaged one."),
        ("When will I get my refund for the returned {product}?",
         "Refunds are issued once the warehouse inspects the item, usually {days} days after "
         "it arrives, and reach your bank a few days later."),
        ("Can I exchange the {product} for a different colour?",
         "Exchanges are handled as a return plus a new order, which keeps the price you paid "
         "if you place the new order within {days} days."),
        ("Is the return shipping for order {order} free?",
         "Return shipping is free for faulty items and for members; otherwise a fee of "
         "{amount} is deducted from the refund."),
    ],
    "account": [
        ("I cannot log in to my account on my {device} after resetting the password.",
         "Password links expire after {days} hours; request a new one, open it in the same "
         "browser and clear saved passwords for our site before signing in."),
        ("How do I delete my account and all my data after order {order}?",
         "Go to Settings, then Privacy, and choose delete account; we erase personal data "
         "within {days} days, keeping only invoices the law requires."),
        ("Can I merge two accounts that both have orders, including {order}?",
         "Accounts cannot be merged automatically, but support can move order history to one "
         "account once you confirm both e-mail addresses."),
        ("How do I turn off the marketing newsletters about the {product}?",
         "Use the unsubscribe link at the bottom of any newsletter or switch off marketing in "
         "the notification settings; changes apply within {days} days."),
        ("Someone changed the delivery address to {city} on my account without asking me.",
         "We have locked the account as a precaution; reset your password, enable two-step "
         "sign-in and we will review recent orders such as {order} with you."),
    ],
    "technical": [
        ("The app crashes whenever I open the {product} page.",
         "Please update the app to the latest version and clear its cache; if it still crashes, "
         "send us the phone model so the developers can reproduce it."),
        ("My {product} will not pair with the companion app.",
         "Hold the power button for {days} seconds until the light blinks blue, enable "
         "Bluetooth and location on the phone, then add the device again in the app."),
        ("The checkout button does nothing when I try to pay {amount}.",
         "This usually comes from an ad blocker or an outdated browser; disable extensions for "
         "our site or try another browser, and the button should respond."),
        ("The firmware update for my {product} fails halfway.",
         "Keep the device charging and close to the phone during the update; if it stops "
         "again, reset it to factory settings and retry the update."),
        ("I get an error code when uploading a photo for order {order}.",
         "Photos must be under 10 MB in JPG or PNG format; resize the image or take a new "
         "photo with lower resolution and upload again."),
    ],
}
OPENERS = ["Hello,", "Hi there,", "Good morning,", "Hey,", "Quick question:", "Hi team,",
           "Excuse me,", "Dear support,", "Hello again,", "Urgent:", "Good evening,",
           "Hi support,", "Sorry to bother you,", ""]
DETAILS = ["I have been a customer for {years} years.", "This is the second time it happened.",
           "I need it before the weekend in {city}.", "It was meant to be a gift for my {relative}.",
           "Your website did not explain this clearly.", "I tried the help pages already.",
           "My {relative} had the same issue last {month}.", "I would appreciate a fast answer.",
           "I ordered it on {month} {day} from {city}.", "I am writing from my {device}.",
           "The total was {amount} including delivery.", "I placed the order {days} days ago.",
           "My {relative} recommended your shop.", "I live in {city} if that matters."]
CITIES = ["Lisbon", "Leeds", "Austin", "Lyon", "Osaka", "Accra", "Denver", "Porto", "Bergen",
          "Turin", "Dublin", "Quito", "Perth", "Krakow", "Nairobi", "Boston"]
RELATIVES = ["sister", "brother", "mother", "father", "colleague", "neighbour", "cousin", "son"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]
DEVICES = ["phone", "tablet", "work laptop", "old desktop", "smart TV"]
ACKS = ["Thanks for reaching out.", "Thank you for contacting us.", "Sorry for the trouble.",
        "We understand how frustrating this is.", "Thanks for your patience.",
        "Happy to help with this.", "Good question.", ""]
EXTRAS = ["You can also follow the status in the app.", "Our team is available every day.",
          "We have added a note to your account.", "Let us know if anything is unclear.",
          "A confirmation e-mail will follow shortly.", "", ""]
CLOSINGS = ["Best regards, the support team.", "Have a nice day.", "Kind regards.",
            "Talk soon.", "All the best.", ""]

FIRST_NAMES = ["Maria", "James", "Aisha", "Chen", "Olivia", "Lucas", "Sofia", "Noah", "Priya",
               "Mateo", "Emma", "Liam", "Fatima", "Hiroshi", "Ingrid", "Kwame", "Elena",
               "Omar", "Zoe", "Dmitri",
               # not in ftkit.data.pii's list of first names: what a name list misses
               "Tendai", "Saoirse", "Nnamdi", "Aroha", "Bjorn", "Leilani", "Anouk", "Yusuf"]
LAST_NAMES = ["Garcia", "Smith", "Khan", "Wang", "Brown", "Silva", "Rossi", "Müller", "Patel",
              "Lopez", "Johnson", "Okafor", "Tanaka", "Larsen", "Mensah", "Novak", "Haddad"]
DOMAINS = ["example.com", "example.org", "mail.test", "inbox.example.net"]
PHONE_FORMATS = ["+1 415 555 {a:04d}", "(415) 555-{a:04d}", "415-555-{a:04d}", "415.555.{a:04d}",
                 "+44 20 7946 {a:04d}"]

NON_ENGLISH = [
    ("¿Dónde está mi pedido? Lo compré hace una semana y no ha llegado.",
     "Su pedido está en camino y llegará en los próximos días."),
    ("Wo ist meine Bestellung? Ich warte schon seit zehn Tagen darauf.",
     "Ihre Bestellung wurde versandt und kommt bald bei Ihnen an."),
    ("Je voudrais retourner le produit car il ne fonctionne pas.",
     "Vous pouvez retourner le produit dans les trente jours suivant la livraison."),
    ("Il pagamento è stato addebitato due volte sulla mia carta.",
     "Il secondo addebito verrà annullato automaticamente entro pochi giorni."),
    ("Não consigo entrar na minha conta depois de mudar a senha.",
     "Tente redefinir a senha novamente e limpe os dados do navegador."),
    ("Mijn pakket is beschadigd aangekomen, wat moet ik doen?",
     "Stuur ons een foto van de schade en wij sturen een nieuw pakket."),
]
NON_ENGLISH_CATEGORY = ["shipping", "shipping", "returns", "billing", "account", "returns"]
FILLER = ["We review every request carefully and in order of arrival.",
          "Our policies are designed to be fair to every customer.",
          "The warehouse processes several thousand parcels each day.",
          "Each courier partner has its own tracking system and timelines.",
          "Refund timelines depend on the bank and the payment method.",
          "Product pages list the warranty terms for each item.",
          "Support agents can see the full history of your orders.",
          "Seasonal peaks can slow down both deliveries and answers."]
MOJIBAKE_SOURCES = [
    ("I can’t find the café table I ordered — is it still in stock?",
     "It’s back in stock next week — we’ll e-mail you when it ships.", "shipping"),
    ("The résumé template I bought won’t download.",
     "We’ve reset the download link — try again from 'My purchases'.", "technical"),
    ("My naïve question: why was I charged €12 for delivery?",
     "Delivery costs €12 for orders under €50 — it’s shown at checkout.", "billing"),
    ("The jacket’s zip broke after two days — can I return it?",
     "Of course — start a return and we’ll cover the shipping.", "returns"),
]
BAD_LABELS = ["misc", "shiping", "urgent", "Billing department", "other"]


def luhn_digit(digits: str) -> int:
    """Check digit that makes ``digits + d`` pass the Luhn test."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return (10 - total % 10) % 10


def card_number(rng: random.Random, valid: bool) -> str:
    body = rng.choice("45") + "".join(rng.choice("0123456789") for _ in range(14))
    check = luhn_digit(body)
    digits = body + str(check if valid else (check + rng.randint(1, 9)) % 10)
    sep = rng.choice([" ", "-", ""])
    return sep.join(digits[i:i + 4] for i in range(0, 16, 4))


def _slots(rng: random.Random) -> dict:
    return {"product": rng.choice(PRODUCTS), "order": f"#{rng.randint(10000, 99999)}",
            "days": rng.randint(2, 14), "amount": f"{rng.randint(5, 400)} euros",
            "years": rng.randint(2, 12), "city": rng.choice(CITIES), "day": rng.randint(1, 28),
            "relative": rng.choice(RELATIVES), "month": rng.choice(MONTHS),
            "device": rng.choice(DEVICES)}


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


def _pii(rng: random.Random, category: str) -> tuple[str, str, list]:
    """A sentence for the question, a greeting for the answer, and the PII values used."""
    first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
    email = f"{first.lower()}.{last.lower()}{rng.randint(1, 99)}@{rng.choice(DOMAINS)}"
    phone = rng.choice(PHONE_FORMATS).format(a=rng.randint(0, 9999))
    kind = rng.choice(["email", "phone", "card" if category == "billing" else "email"])
    values = [["name", f"{first} {last}"], ["name", first]]
    if kind == "email":
        sentence = f"My name is {first} {last}, e-mail {email}."
        values.append(["email", email])
    elif kind == "phone":
        sentence = f"This is {first} {last}, call me on {phone}."
        values.append(["phone", phone])
    else:
        card = card_number(rng, valid=True)
        sentence = f"I am {first} {last} and my card is {card}."
        values.append(["card", card])
    return sentence, f"Hi {first},", values


def clean_record(rng: random.Random, with_pii: bool) -> tuple[dict, list]:
    category = rng.choice(CATEGORIES)
    question, answer = rng.choice(TEMPLATES[category])
    s = _slots(rng)
    pii_sentence, greeting, values = _pii(rng, category) if with_pii else ("", "", [])
    tracking = ""
    if category == "shipping" and rng.random() < 0.3:  # 16 digits that fail Luhn: not a card
        tracking = f"The tracking number is {card_number(rng, valid=False)}."
    details = [d.format(**s) for d in rng.sample(DETAILS, 2)]
    instruction = _join(rng.choice(OPENERS), question.format(**s), tracking, *details,
                        pii_sentence)
    response = _join(greeting, rng.choice(ACKS), answer.format(**s), rng.choice(EXTRAS),
                     rng.choice(CLOSINGS))
    return {"instruction": instruction, "response": response, "category": category}, values


def _typo(rng: random.Random, word: str) -> str:
    if len(word) < 4:
        return word
    i = rng.randrange(1, len(word) - 2)
    return word[:i] + word[i + 1] + word[i] + word[i + 2:]


def near_copy(rng: random.Random, rec: dict) -> dict:
    """One to three small edits to the instruction (and sometimes the response)."""
    words = rec["instruction"].split()
    for _ in range(rng.randint(1, 3)):
        op, i = rng.choice(["drop", "typo", "insert"]), rng.randrange(len(words))
        if op == "drop" and len(words) > 6:
            words.pop(i)
        elif op == "typo":
            words[i] = _typo(rng, words[i])
        else:
            words.insert(i, rng.choice(["please", "really", "kindly", "just"]))
    response = rec["response"]
    if rng.random() < 0.5:
        response = response.replace("Thanks", "Thank you", 1).replace(" and ", " & ", 1)
    return {**rec, "instruction": " ".join(words), "response": response}


def exact_copy(rng: random.Random, rec: dict) -> dict:
    """Same text up to case and whitespace, which normalised hashing ignores."""
    text = rec["instruction"]
    text = rng.choice([text.upper(), text.lower(), "  " + text.replace(" ", "  ") + " "])
    return {**rec, "instruction": text}


def noise_records(rng: random.Random, counts: dict) -> list[tuple[dict, str]]:
    out = []
    for _ in range(counts["too_short"]):
        out.append(({"instruction": rng.choice(["help", "refund?", "hi", "order", "??"]),
                     "response": rng.choice(["ok", "Sure.", "yes"]),
                     "category": rng.choice(CATEGORIES)}, "too_short"))
    for _ in range(counts["too_long"]):
        base, _ = clean_record(rng, with_pii=False)
        filler = " ".join(rng.choice(FILLER) for _ in range(rng.randint(60, 90)))
        out.append(({**base, "response": base["response"] + " " + filler}, "too_long"))
    for _ in range(counts["non_english"]):
        i = rng.randrange(len(NON_ENGLISH))
        q, a = NON_ENGLISH[i]
        out.append(({"instruction": q, "response": a, "category": NON_ENGLISH_CATEGORY[i]},
                    "non_english"))
    for _ in range(counts["gibberish"]):
        word = lambda: "".join(rng.choice("qwrtzpsdfghjklxcvbnm") for _ in range(rng.randint(3, 9)))
        out.append(({"instruction": " ".join(word() for _ in range(rng.randint(5, 12))),
                     "response": " ".join(word() for _ in range(rng.randint(5, 12))),
                     "category": rng.choice(CATEGORIES)}, "gibberish"))
    for _ in range(counts["mojibake"]):
        k = rng.randrange(len(MOJIBAKE_SOURCES))
        q, a, cat = MOJIBAKE_SOURCES[k]
        opener = rng.choice(OPENERS)
        garble = lambda t: t.encode("utf-8").decode("cp1252", errors="replace")
        # rows from one source sentence are near copies of each other: one family
        out.append(({"instruction": garble(_join(opener, q)), "response": garble(a),
                     "category": cat, "family": f"mojibake-{k}"}, "mojibake"))
    return out


def bad_records(rng: random.Random, counts: dict) -> list[tuple[dict, str]]:
    out = []
    for i in range(counts["empty_text"]):
        rec, _ = clean_record(rng, with_pii=False)
        key = "instruction" if i % 2 == 0 else "response"
        out.append(({**rec, key: rng.choice(["", "   ", None])}, "empty_text"))
    for _ in range(counts["wrong_type"]):
        rec, _ = clean_record(rng, with_pii=False)
        out.append(({**rec, "response": rng.choice([42, 3.5, 0])}, "wrong_type"))
    for _ in range(counts["bad_label"]):
        rec, _ = clean_record(rng, with_pii=False)
        out.append(({**rec, "category": rng.choice(BAD_LABELS)}, "bad_label"))
    for _ in range(counts["non_utf8"]):
        rec, _ = clean_record(rng, with_pii=False)
        out.append(({**rec, "instruction": rec["instruction"] + " Merci, café crème."},
                    "non_utf8"))
    return out


COUNTS = {"clean": 700, "pii_share": 0.3, "exact_dup": 60, "near_dup": 110, "too_short": 20,
          "too_long": 12, "non_english": 18, "gibberish": 12, "mojibake": 10, "empty_text": 8,
          "wrong_type": 6, "bad_label": 8, "non_utf8": 3}


def generate(seed: int = 7, counts: dict | None = None) -> list[dict]:
    """All records with their ground truth (``id``, ``kind``, ``family``, ``pii``), shuffled."""
    counts = {**COUNTS, **(counts or {})}
    rng = random.Random(seed)
    rows = []
    for _ in range(counts["clean"]):
        rec, pii = clean_record(rng, with_pii=rng.random() < counts["pii_share"])
        rows.append({**rec, "kind": "clean", "pii": pii})
    for i in range(len(rows)):
        rows[i]["id"] = rows[i]["family"] = f"r{i:05d}"
    originals = list(rows)
    for kind, make in (("exact_dup", exact_copy), ("near_dup", near_copy)):
        for _ in range(counts[kind]):
            src = rng.choice(originals)
            fields = {k: src[k] for k in ("instruction", "response", "category")}
            rows.append({**make(rng, fields), "kind": kind, "pii": src["pii"],
                         "family": src["id"]})
    for rec, kind in noise_records(rng, counts) + bad_records(rng, counts):
        rows.append({**rec, "kind": kind, "pii": []})
    for i, row in enumerate(rows[counts["clean"]:], start=counts["clean"]):
        row["id"] = f"r{i:05d}"
        row.setdefault("family", row["id"])
    rng.shuffle(rows)
    return rows


def assign_sources(rng: random.Random, rows: list[dict]) -> None:
    """csv 30%, jsonl 30%, parquet 20%, sqlite 20%; formats that cannot hold a problem avoid it."""
    for row in rows:
        if row["kind"] == "non_utf8":
            row["source"] = "csv"
        elif row["kind"] == "wrong_type":
            row["source"] = rng.choice(["jsonl", "sqlite"])
        else:
            row["source"] = rng.choices(["csv", "jsonl", "parquet", "sqlite"], [3, 3, 2, 2])[0]


FIELDS = ["id", "instruction", "response", "category"]


def write_csv(rows: list[dict], path: Path) -> None:
    with open(path, "wb") as fh:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(FIELDS)
        fh.write(buf.getvalue().encode("utf-8"))
        for row in rows:
            buf = io.StringIO()
            csv.writer(buf, lineterminator="\n").writerow(
                ["" if row[f] is None else row[f] for f in FIELDS])
            # a legacy export: this line is Latin-1, not UTF-8
            fh.write(buf.getvalue().encode("latin-1" if row["kind"] == "non_utf8" else "utf-8"))


def write_jsonl(rows: list[dict], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps({f: row[f] for f in FIELDS}, ensure_ascii=False) + "\n")


def write_parquet(rows: list[dict], path: Path) -> None:
    import pandas as pd

    pd.DataFrame([{f: row[f] for f in FIELDS} for row in rows]).to_parquet(path, index=False)


def write_sqlite(rows: list[dict], path: Path) -> None:
    path.unlink(missing_ok=True)
    with sqlite3.connect(path) as con:
        # no declared column types: SQLite then keeps a number as a number, as a sloppy
        # application database would
        con.execute("CREATE TABLE tickets (id, instruction, response, category)")
        con.executemany("INSERT INTO tickets VALUES (?, ?, ?, ?)",
                        [tuple(row[f] for f in FIELDS) for row in rows])
    con.close()


WRITERS = {"csv": ("tickets.csv", write_csv), "jsonl": ("tickets.jsonl", write_jsonl),
           "parquet": ("tickets.parquet", write_parquet), "sqlite": ("tickets.sqlite", write_sqlite)}


def write_all(rows: list[dict], out: Path, seed: int = 7) -> dict[str, int]:
    """Write the four source files and ground_truth.jsonl; returns rows per source."""
    out.mkdir(parents=True, exist_ok=True)
    assign_sources(random.Random(seed + 1), rows)
    counts = {}
    for source, (name, writer) in WRITERS.items():
        part = [r for r in rows if r["source"] == source]
        writer(part, out / name)
        counts[source] = len(part)
    with open(out / "ground_truth.jsonl", "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({k: r[k] for k in ("id", "kind", "family", "pii", "source")},
                                ensure_ascii=False) + "\n")
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "support_records")
    args = parser.parse_args()
    rows = generate(args.seed)
    per_source = write_all(rows, args.out, args.seed)
    kinds: dict[str, int] = {}
    for r in rows:
        kinds[r["kind"]] = kinds.get(r["kind"], 0) + 1
    print(f"{len(rows)} records -> {args.out}: {per_source}")
    print("kinds:", kinds)


if __name__ == "__main__":
    main()
