"""Moderation throughput per instance: ModerateFunction.process vs a naive substring loop.

    .venv/bin/python -m bench.moderation [--messages N] [--users N] [--seed N]

On one realistic mix of chat (mostly ordinary sentences, some profanity plain and disguised,
links, repeated spam, a few non-Latin and emoji lines), with the blocklist and limits of
deploy/functions/moderate.yaml, in the same run:
  * moderate (memory): the full function as the Pulsar instance calls it, one message at a
    time, through the in-memory Context (no broker; publishes complete at once): JSON parsing,
    validation, blocklist, links, rate/duplicate counters in instance memory, two publishes, ack;
  * moderate (state): the same with the Context's state API on (dict-backed here, so this shows
    our cost per state call, not BookKeeper's round trips);
  * moderate (signed chat): memory counters, with the function secret chatSigningKey given, so each
    message's `chat_sig` (signed by the ingress's code beforehand, outside the timing) is checked;
  * blocklist scan only: our matcher alone on the texts;
  * naive baseline: `any(word in text.lower() for word in blocklist)` on the texts.
Times are CPU time of this process (time.process_time): a function instance is one thread on
one core, and CPU time keeps the figures meaningful on a shared, busy machine.
Required: moderate >= 5,000 msg/s per instance. The detection columns show what the
baseline's speed buys: it misses disguised words and hits innocent ones ("Scunthorpe").
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "functions") not in sys.path:
    sys.path.insert(0, str(ROOT / "functions"))

from chat_blocklist import Blocklist  # noqa: E402
from moderate import ModerateFunction  # noqa: E402

from tests.fake_context import FakeContext  # noqa: E402

CHAT_IN = "persistent://public/wtpulsar/chat-in"
TARGET = 5_000  # msg/s per instance, required

WORDS = (
    "the a to and of in is it you that he was for on are with as I his they be at one have this from or "
    "had by hot word but what some we can out other were all there when up use your how said an each she "
    "which do their time if will way about many then them write would like so these her long make thing "
    "see him two has look more day could go come did number sound no most people my over know water than "
    "call first who may down side been now find stream game nice play lol gg wp great chat hello thanks "
    "love this song what level boss fight camera audio lag fps good"
).split()
# Innocent words that contain a blocked word: where a substring matcher cries wolf.
TRICKY = "class pass grass assist Scunthorpe Essex cocktail analysis assassin shitake therapist Dickens".split()
FOREIGN = ["Привет всем, как дела?", "こんにちは、配信ありがとう", "¡Qué buen juego!", "Ça va très bien, merci"]
EMOJI = ["🎉", "😂", "🔥", "👍", "❤️"]
DISGUISES: list[Callable[[str], str]] = [
    lambda w: w,
    str.upper,
    lambda w: w.replace("i", "1").replace("a", "4").replace("e", "3").replace("o", "0").replace("s", "$"),
    lambda w: ".".join(w),
    lambda w: " ".join(w),
    lambda w: w[0] + w[1] * 4 + w[2:],
    lambda w: w.replace("a", "\u0430").replace("o", "\u043e").replace("e", "\u0435"),  # Cyrillic
    lambda w: "".join(chr(ord(c) + 0xFEE0) if "a" <= c <= "z" else c for c in w),  # fullwidth
    lambda w: "\u200b".join(w),
]
BAD_WORDS = ["shit", "bitch", "fuck", "bastard", "wanker", "asshole"]


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14)))


def make_mix(n: int, users: int, seed: int) -> list[tuple[str, str, bool]]:
    """(user, text, should_be_caught) for n messages."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bool]] = []
    for i in range(n):
        user = f"user{rng.randrange(users)}"
        roll = rng.random()
        if roll < 0.80:
            text, bad = sentence(rng), False
            if rng.random() < 0.1:
                text += " " + rng.choice(EMOJI)
        elif roll < 0.82:
            text, bad = rng.choice(FOREIGN), False
        elif roll < 0.83:
            text, bad = f"{sentence(rng)} {rng.choice(TRICKY)} {sentence(rng)}", False
        elif roll < 0.93:
            word = rng.choice(DISGUISES)(rng.choice(BAD_WORDS))
            words = sentence(rng).split()
            words.insert(rng.randrange(len(words) + 1), word)
            text, bad = " ".join(words), True
        elif roll < 0.97:
            text, bad = f"{sentence(rng)} https://{rng.choice(['youtube.com', 'evil.example', 'github.com'])}/x{i}", False
        else:
            text, bad = "FREE COINS click now", False  # repeated spam, caught by duplicate detection
        out.append((user, text, bad))
    return out


def payloads(mix: list[tuple[str, str, bool]]) -> list[tuple[bytes, dict[str, str]]]:
    result = []
    for n, (user, text, _bad) in enumerate(mix):
        body = {"room": f"room{n % 20}", "user": user, "msg_id": f"m{n}", "text": text, "sent_at": 1_800_000_000_000 + n}
        props: dict[str, str] = {"room": f"room{n % 20}", "user": user, "kind": "chat", "codec": "json", "t_ingress": str(body["sent_at"])}
        result.append((json.dumps(body, ensure_ascii=False).encode(), props))
    return result


def signed(messages: list[tuple[bytes, dict[str, str]]], key: bytes) -> list[tuple[bytes, dict[str, str]]]:
    from ingress.chat_signing import sign

    return [(payload, {**props, "chat_sig": sign(key, props, payload)}) for payload, props in messages]


def run_function(user_config: dict[str, Any], messages: list[tuple[bytes, dict[str, str]]], state: bool,
                 key: bytes | None = None) -> float:  # fmt: skip
    ctx = FakeContext(user_config=user_config, input_topics=[CHAT_IN], current_topic=CHAT_IN, state_enabled=state,
                      secrets={"chatSigningKey": key.decode()} if key else {})  # fmt: skip
    fn = ModerateFunction()
    fn.process(messages[0][0], ctx)  # setup (config, probe) outside the timing
    ctx.published.clear()
    start = time.process_time()
    for n, (payload, props) in enumerate(messages):
        ctx.set_message(topic=CHAT_IN, key=props["room"], properties=props)
        fn.process(payload, ctx)
        if n % 2000 == 0:
            ctx.published.clear()
            ctx.acked.clear()
    return time.process_time() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--users", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=4)
    args = parser.parse_args(argv)

    user_config = yaml.safe_load((ROOT / "deploy" / "functions" / "moderate.yaml").read_text())["userConfig"]
    words = [w.strip("*") for rule in user_config["blocklist"].values() for w in rule]
    mix = make_mix(args.messages, args.users, args.seed)
    texts = [text for _user, text, _bad in mix]
    messages = payloads(mix)
    blocklist = Blocklist(user_config["blocklist"], user_config.get("suffixes", ()))
    n = len(texts)

    def naive(text: str) -> bool:
        lowered = text.lower()
        return any(word in lowered for word in words)

    start = time.process_time()
    naive_hits = [naive(t) for t in texts]
    naive_s = time.process_time() - start
    start = time.process_time()
    our_hits = [bool(blocklist.scan(t)) for t in texts]
    scan_s = time.process_time() - start
    memory_s = run_function(user_config, messages, state=False)
    state_s = run_function(user_config, messages, state=True)
    key = b"0123456789abcdef" * 4
    signed_s = run_function(user_config, signed(messages, key), state=False, key=key)

    bad = [b for _u, _t, b in mix]
    n_bad = sum(bad)
    n_clean = n - n_bad

    def caught(hits: list[bool]) -> str:
        return f"{sum(h and b for h, b in zip(hits, bad, strict=True))}/{n_bad}"

    def false_pos(hits: list[bool]) -> str:
        return f"{sum(h and not b for h, b in zip(hits, bad, strict=True))}/{n_clean}"

    rows = [
        ("moderate (memory counters)", memory_s, "", ""),
        ("moderate (state API)", state_s, "", ""),
        ("moderate (signed chat)", signed_s, "", ""),
        ("blocklist scan only", scan_s, caught(our_hits), false_pos(our_hits)),
        ("naive baseline", naive_s, caught(naive_hits), false_pos(naive_hits)),
    ]
    print(f"moderation benchmark: {n} messages, {args.users} users, {len(words)} blocklist entries, "
          f"{sum(bad)} disguised profanity")  # fmt: skip
    print(f"{'method':<28} {'msg/s':>10} {'us/msg':>8} {'vs naive':>9} {'caught':>11} {'false hits':>11}")
    for name, seconds, hit, fp in rows:
        rate = n / seconds
        print(f"{name:<28} {rate:>10,.0f} {seconds / n * 1e6:>8.1f} {naive_s / seconds:>8.3f}x {hit:>11} {fp:>11}")
    memory_rate = n / memory_s
    verdict = "meets" if memory_rate >= TARGET else "MISSES"
    print(f"target: moderate >= {TARGET:,} msg/s per instance -> {memory_rate:,.0f} msg/s ({verdict})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
