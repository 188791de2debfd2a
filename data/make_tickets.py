"""Generate the imbalanced support-ticket intent data set: data/tickets/tickets.csv.

Eight intents, three of them rare (2-3.5 % each). The rare intents share vocabulary and slot
values with frequent ones (a refund request reads much like a billing question, a fraud report
like an account-access problem, a cancellation like either), so a classifier that ignores the
imbalance misses most of them. Texts are templates with slot fillers, optional greetings,
sign-offs and filler sentences, random casing and typos. Deterministic for a given seed.

Used in notebooks/02_data_balancing.ipynb (paper §3.1.3, §3.5.3).

    python data/make_tickets.py            # writes data/tickets/tickets.csv (seed 7, 3000 rows)
    python data/make_tickets.py --n 5000 --seed 1 --out /tmp/tickets.csv
"""
from __future__ import annotations

import argparse
import csv
import random
from pathlib import Path

# Share of each intent; the last three are the minority classes.
SHARES = {"billing_question": 0.28, "technical_issue": 0.25, "account_access": 0.18,
          "shipping_delay": 0.14, "feature_request": 0.07, "refund_request": 0.035,
          "cancel_subscription": 0.025, "fraud_report": 0.02}

SLOTS = {
    "amount": ["$12.99", "$49", "$120", "€30", "$7.50", "£15", "$299", "$64.20"],
    "plan": ["Pro plan", "family plan", "basic subscription", "premium tier", "annual plan",
             "team plan"],
    "card": ["credit card", "debit card", "PayPal", "bank account", "Visa card"],
    "month": ["January", "March", "last month", "this month", "May", "October"],
    "device": ["iPhone", "Android phone", "laptop", "tablet", "Windows PC", "Mac"],
    "app": ["the app", "the website", "the desktop client", "the dashboard", "the mobile app"],
    "error": ["error 500", "a blank screen", "a timeout", "error code 0x80", "a spinning wheel",
              "'something went wrong'"],
    "order": ["#48213", "#99120", "#10577", "#67002", "#31458", "#80911"],
    "days": ["three days", "a week", "ten days", "two weeks", "five days"],
    "feature": ["dark mode", "CSV export", "a calendar view", "two-factor login by SMS",
                "bulk editing", "offline mode"],
}

# A ticket is a context sentence (what happened) plus an ask (what the customer wants). Rare
# intents mostly borrow the context of a frequent partner intent, so only the short ask tells
# them apart; some tickets carry no ask at all and stay ambiguous, as real ones do.
CONTEXTS = {
    "billing_question": [
        "I see a charge of {amount} on my {card} from {month}.",
        "my invoice for {month} shows {amount} for the {plan}.",
        "the price of my {plan} went up to {amount}.",
        "I was billed {amount} in {month} for the {plan}.",
        "there are two payments of {amount} on my {card} this month.",
    ],
    "technical_issue": [
        "{app} shows {error} when I open it on my {device}.",
        "{app} crashes on my {device} since {month}.",
        "uploading files in {app} fails with {error}.",
        "the payment page in {app} shows {error}.",
        "{app} is very slow on my {device}.",
    ],
    "account_access": [
        "I cannot log in to my account from my {device}.",
        "my account was locked and the reset link shows {error}.",
        "my password stopped working on {app} yesterday.",
        "I got an email saying my account settings were changed.",
        "the two-factor code is not accepted on my {device}.",
    ],
    "shipping_delay": [
        "my order {order} has not arrived after {days}.",
        "tracking for order {order} has not moved in {days}.",
        "the courier says order {order} was delivered but it is not here.",
    ],
    "feature_request": [
        "I use {app} every day on my {device}.",
        "my team moved to the {plan} in {month}.",
        "{app} does not have {feature}.",
    ],
}
CONTEXTS["refund_request"] = CONTEXTS["billing_question"][:2] + [
    "order {order} arrived broken after {days}."]
CONTEXTS["cancel_subscription"] = ["I am paying {amount} for the {plan}.",
                                   "I do not use {app} any more."]
CONTEXTS["fraud_report"] = ["I got an email about a new login from a {device}.",
                            "there is a payment of {amount} on my {card}."]
# Where a rare intent takes its context from most of the time.
PARTNERS = {"refund_request": ["billing_question"],
            "cancel_subscription": ["billing_question", "account_access"],
            "fraud_report": ["account_access", "billing_question"]}
ASKS = {
    "billing_question": ["can you explain it?", "is that right?", "why?",
                         "what am I paying for?", "how is this calculated?"],
    "technical_issue": ["can you fix it?", "is there a workaround?", "is this a known bug?",
                        "what should I try?"],
    "account_access": ["how do I get back in?", "please help me sign in.",
                       "how do I reset it?", "I need access today."],
    "shipping_delay": ["where is my package?", "when will it arrive?", "please check on it."],
    "feature_request": ["please add {feature}.", "would you build {feature}?",
                        "{feature} would save me time."],
    "refund_request": ["please refund it.", "I want my money back.",
                       "please return it to my {card}.", "can I get a refund?"],
    "cancel_subscription": ["please cancel my {plan}.", "stop the renewal please.",
                            "I want to end my subscription."],
    "fraud_report": ["that was not me.", "I did not make this.", "someone else did this.",
                     "I think it is fraud."],
}
P_PARTNER, P_NO_ASK = 0.7, 0.08

GREETINGS = ["", "", "", "hi,", "hello team,", "hey support,", "good morning,", "dear support,"]
FILLERS = ["", "", "", "", "thanks.", "thank you in advance.", "I have been a customer for years.",
           "this is urgent.", "please help.", "my account email is on file.",
           "I tried again today.", "not happy about this.", "see the screenshot I attached."]


def _typo(text: str, rng: random.Random) -> str:
    """Swap two neighbouring letters once: realistic noise that keeps the text readable."""
    i = rng.randrange(1, max(2, len(text) - 2))
    return text[:i - 1] + text[i] + text[i - 1] + text[i + 1:]


def _render(label: str, rng: random.Random) -> str:
    source = label
    if label in PARTNERS and rng.random() < P_PARTNER:
        source = rng.choice(PARTNERS[label])
    parts = [rng.choice(CONTEXTS[source])]
    if rng.random() >= P_NO_ASK:
        parts.append(rng.choice(ASKS[label]))
    if rng.random() < 0.3:
        rng.shuffle(parts)
    slots = {k: rng.choice(v) for k, v in SLOTS.items()}
    body = " ".join(parts).format(**slots)
    text = " ".join(p for p in (rng.choice(GREETINGS), body, rng.choice(FILLERS)) if p)
    if rng.random() < 0.3:
        text = _typo(text, rng)
    return text.lower() if rng.random() < 0.3 else text[0].upper() + text[1:]


def make_tickets(n: int = 3000, seed: int = 7) -> list[tuple[str, str]]:
    """``n`` (text, label) rows with class counts ``round(share * n)``, shuffled."""
    rng = random.Random(seed)
    labels = [lab for lab, share in SHARES.items() for _ in range(round(share * n))]
    rng.shuffle(labels)
    return [(_render(lab, rng), lab) for lab in labels]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default=str(Path(__file__).parent / "tickets" / "tickets.csv"))
    args = parser.parse_args()
    rows = make_tickets(args.n, args.seed)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
    print(f"wrote {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
