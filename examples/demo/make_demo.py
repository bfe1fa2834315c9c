"""Build the bundled demo: an Acme Cloud support-assistant chat dataset and a small tokenizer.

    python examples/demo/make_demo.py            # rewrites train.jsonl and tokenizer/ next to this file

Deterministic (seeded): running it twice gives byte-identical files. Everything is generated offline
from the templates below, so tests and `tunewise launch --smoke` never need the hub. The persona is a
support assistant for a fictional product, "Acme Cloud", with a recognisable brand voice (warm,
brief, numbered steps, a short sign-off): the kind of tone-and-style goal the guide lists under
"When to Fine-Tune Versus Alternative Approaches".
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
SEED = 1234
N_ROWS = 400
VOCAB_SIZE = 2000

SYSTEM = (
    "You are Skye, the Acme Cloud support assistant. Be warm and brief, use numbered steps for "
    "procedures, and end with a short sign-off."
)

# Each topic: user phrasings ({x} filled from `fills`), and an answer built from steps + a tip.
TOPICS = [
    {
        "fills": ["bucket", "storage bucket", "object bucket"],
        "asks": [
            "How do I create a new {x}?",
            "I need a {x} for my app's uploads. Where do I start?",
            "can you walk me through making a {x} in the eu-west region",
            "What's the quickest way to set up a {x} from the CLI?",
        ],
        "steps": [
            "Open the Acme Console and choose **Storage → Buckets**.",
            "Click **New bucket**, pick a globally unique name and your region.",
            "Leave versioning on unless you are sure you will never need an older copy.",
            "From the CLI it is one line: `acme storage bucket create NAME --region eu-west-1`.",
        ],
        "tip": "Bucket names can't be changed later, so pick one you'll be happy with.",
    },
    {
        "fills": ["invoice", "bill", "monthly charge"],
        "asks": [
            "Why is my {x} higher than last month?",
            "My {x} doubled and I don't know why!",
            "Can you explain a line on my {x}? It says 'egress'.",
            "where can I download last quarter's {x}s",
        ],
        "steps": [
            "Go to **Billing → Usage** and group the chart by service.",
            "Egress (data leaving Acme Cloud) is the usual surprise; the CDN tab shows where it went.",
            "Set a budget alert under **Billing → Alerts** so a spike never catches you again.",
            "PDF invoices for any month are under **Billing → Invoices → Download**.",
        ],
        "tip": "Budget alerts are free and take about a minute to set up.",
    },
    {
        "fills": ["API key", "access token", "service key"],
        "asks": [
            "I think my {x} leaked. What should I do?",
            "How do I rotate an {x}?",
            "My {x} stopped working this morning",
            "Can I limit what an {x} is allowed to do?",
        ],
        "steps": [
            "Open **Security → Keys** and click **Revoke** on the affected key right away.",
            "Create a replacement with only the scopes the app needs (read-only where you can).",
            "Update the key in your app's secret store, never in source code.",
            "Check **Security → Audit log** for calls made with the old key.",
        ],
        "tip": "Keys expire after 90 days by default; the console warns you a week ahead.",
    },
    {
        "fills": ["instance", "virtual machine", "VM"],
        "asks": [
            "My {x} won't start. It's stuck on 'provisioning'.",
            "How do I resize an {x}?",
            "how do i ssh into my {x}",
            "Can I move an {x} to another region?",
        ],
        "steps": [
            "Check the status page first; a regional incident shows there within minutes.",
            "Stop the instance, choose **Resize**, pick the new size, and start it again.",
            "To connect, run `acme compute ssh NAME`; it uses your console login, no keys to copy.",
            "Moving regions means taking a snapshot and restoring it in the new region.",
        ],
        "tip": "Resizing keeps your disk and IP address, so nothing else needs to change.",
    },
    {
        "fills": ["custom domain", "domain", "DNS record"],
        "asks": [
            "How do I point my {x} at my app?",
            "My {x} shows a certificate error",
            "Is HTTPS included when I add a {x}?",
            "The {x} I added last night still isn't working.",
        ],
        "steps": [
            "Add the domain under **Networking → Domains**; we show the exact records to create.",
            "Create a CNAME at your registrar pointing to the target we list.",
            "Certificates are issued automatically once the record resolves, usually within 15 minutes.",
            "DNS changes can take up to 48 hours to reach every resolver; `dig` shows what yours sees.",
        ],
        "tip": "HTTPS certificates renew on their own; you never have to upload one.",
    },
    {
        "fills": ["database", "Acme DB cluster", "Postgres database"],
        "asks": [
            "How often is my {x} backed up?",
            "I deleted a table by mistake. Can my {x} be restored?",
            "How do I upgrade my {x} to a newer version?",
            "my {x} is running slow, any ideas?",
        ],
        "steps": [
            "Acme DB takes a full backup daily and keeps point-in-time logs for 7 days.",
            "Choose **Restore**, pick a time just before the mistake, and restore to a new cluster.",
            "Check the new cluster, then switch your app's connection string over.",
            "For slowness, open **Insights**: it lists the slowest queries and suggests indexes.",
        ],
        "tip": "Restoring never overwrites the original cluster, so it's safe to try.",
    },
    {
        "fills": ["team member", "colleague", "new developer"],
        "asks": [
            "How do I give a {x} access to our project?",
            "Can I add a {x} with read-only access?",
            "A {x} left the company. How do I remove them?",
            "how many seats do we get for each {x}",
        ],
        "steps": [
            "Open **Settings → Members** and click **Invite**.",
            "Pick a role: Viewer (read-only), Developer, or Admin.",
            "To remove someone, choose **Remove** next to their name; their keys are revoked too.",
            "Every plan includes unlimited members; you pay only for what you run.",
        ],
        "tip": "Give people the smallest role that lets them do their job; you can raise it later.",
    },
    {
        "fills": ["Kubernetes cluster", "Acme Kube cluster", "cluster"],
        "asks": [
            "How do I get the kubeconfig for my {x}?",
            "Can my {x} scale nodes automatically?",
            "What's the best way to upgrade my {x}?",
            "my pods on the {x} keep getting evicted",
        ],
        "steps": [
            "Run `acme kube credentials NAME` to merge the cluster into your kubeconfig.",
            "Turn on autoscaling under **Node pools**, with a minimum and maximum node count.",
            "Upgrades roll through one node at a time; set a maintenance window you're comfortable with.",
            "Evictions usually mean memory pressure: set requests and limits, or add a larger pool.",
        ],
        "tip": "Node pools can mix sizes, so you can keep small nodes for small jobs.",
    },
]

OPENERS = ["Hi!", "Hello,", "Hey there.", "", "", "Quick question:", "Hi Skye,", "Good morning!"]
SIGNOFFS = [
    "Happy building! — Skye",
    "Anything else? I'm here. — Skye",
    "Cheers, Skye from Acme Cloud",
    "Glad to help. — Skye",
]
GREETINGS = [
    "Happy to help!",
    "Good question!",
    "Let's sort that out.",
    "No problem at all.",
    "I can help with that.",
]
FOLLOW_UPS = [
    "Thanks! Does that cost anything extra?",
    "Will this cause any downtime?",
    "Perfect, thank you.",
    "Can I do the same thing from the CLI?",
]
FOLLOW_ANSWERS = {
    "Thanks! Does that cost anything extra?": "No extra charge: you only pay for the resources you run.",
    "Will this cause any downtime?": "No downtime for this change; your app keeps serving while it applies.",
    "Perfect, thank you.": "You're welcome!",
    "Can I do the same thing from the CLI?": "Yes: every console action has an `acme` CLI command; "
    "`acme help` lists them.",
}

GENERIC_ENGLISH = """
The quick brown fox jumps over the lazy dog. Language models learn patterns from text, one token at a
time. A good dataset is small, clean and consistent; a bad one teaches the model its mistakes.
Please read the documentation before you change the configuration. If something goes wrong, check the
logs, then try again with a smaller example. Thank you for your patience while we look into this.
Numbers such as 1, 2, 3, 10, 42, 100, 2025 and 3.14 appear in many sentences. Dates like Monday,
January 5th, and times like 09:30 are common too. Questions often start with who, what, when, where,
why or how. Answers should be short, correct and kind.
Engineers deploy services, monitor dashboards, and review pull requests before lunch. The weather in
spring is mild; summer brings long evenings, autumn colourful leaves, and winter early darkness.
Our customers include startups, universities, hospitals, retailers, banks and government agencies.
Security matters: use strong passwords, enable two-factor authentication, and rotate credentials.
Performance depends on latency, throughput, memory, storage, network bandwidth and caching.
She wrote a report about training, evaluation, validation, overfitting and generalisation.
The library offers functions for parsing, formatting, sorting, filtering and transforming records.
Meetings were scheduled for Tuesday, Wednesday, Thursday and Friday afternoons in London and Paris.
Errors happen: timeouts, permission denied, not found, conflict, rate limited, internal server error.
Containers, images, registries, volumes, secrets, ingress, load balancers and firewalls work together.
Please describe the problem, the steps to reproduce it, what you expected and what happened instead.
"""


def _answer(rng: random.Random, topic: dict) -> str:
    k = rng.randint(1, len(topic["steps"]))
    steps = topic["steps"][:k] if rng.random() < 0.6 else rng.sample(topic["steps"], k)
    body = "\n".join(f"{i}. {s}" for i, s in enumerate(steps, 1)) if k > 1 else steps[0]
    parts = [rng.choice(GREETINGS), body]
    if rng.random() < 0.5:
        parts.append(f"Tip: {topic['tip']}")
    parts.append(rng.choice(SIGNOFFS))
    return "\n\n".join(parts)


def make_rows(n: int = N_ROWS, seed: int = SEED) -> list[dict]:
    """`n` distinct chat rows in TRL's `messages` format (deterministic for a seed)."""
    rng = random.Random(seed)
    rows, seen = [], set()
    while len(rows) < n:
        topic = rng.choice(TOPICS)
        ask = rng.choice(topic["asks"]).format(x=rng.choice(topic["fills"]))
        opener = rng.choice(OPENERS)
        if opener.endswith(","):  # "Hello, how do I ..." reads as one sentence
            ask = ask[0].lower() + ask[1:]
        user = f"{opener} {ask}".strip()
        msgs = [{"role": "user", "content": user}, {"role": "assistant", "content": _answer(rng, topic)}]
        if rng.random() < 0.7:  # most rows carry the persona's system prompt, some rely on tuning alone
            msgs.insert(0, {"role": "system", "content": SYSTEM})
        if rng.random() < 0.25:  # a second turn: the voice must hold across turns
            q = rng.choice(FOLLOW_UPS)
            msgs += [
                {"role": "user", "content": q},
                {"role": "assistant", "content": f"{FOLLOW_ANSWERS[q]} {rng.choice(SIGNOFFS)}"},
            ]
        key = json.dumps(msgs, sort_keys=True)
        if key not in seen:
            seen.add(key)
            rows.append({"messages": msgs})
    return rows


# ChatML-style turns. `{% generation %}` marks assistant content so TRL's `assistant_only_loss`
# can build its mask (the loss on assistant turns only, "Data Preparation Best Practices").
CHAT_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{% if message['role'] == 'assistant' %}"
    "{{ '<|im_start|>assistant\n' }}{% generation %}{{ message['content'] }}{{ '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def train_tokenizer(texts: list[str], out_dir: Path, vocab_size: int = VOCAB_SIZE) -> None:
    """Byte-level BPE (never an unknown token), saved as a transformers fast tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "<|im_start|>", "<|im_end|>"]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        model_max_length=4096,
    )
    fast.chat_template = CHAT_TEMPLATE
    out_dir.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(str(out_dir))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE, help="directory for train.jsonl and tokenizer/")
    ap.add_argument("--rows", type=int, default=N_ROWS)
    args = ap.parse_args(argv)
    rows = make_rows(args.rows)
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "train.jsonl", "w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    texts = [m["content"] for r in rows for m in r["messages"]] + GENERIC_ENGLISH.split("\n") * 3
    train_tokenizer(texts, args.out / "tokenizer")
    print(f"wrote {len(rows)} rows to {args.out / 'train.jsonl'} and a tokenizer to {args.out / 'tokenizer'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
