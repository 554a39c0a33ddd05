"""Matcher speed and memory on synthetic knowledge bases of 1k, 10k and 100k phrasings.

The KBs mix Chinese and English entries (five phrasings each) drawn from a seeded, Zipf-like vocabulary of
shop words plus a long tail of made-up product names, so posting lists are as skewed as in real text.
Queries are half reworded KB phrasings (words dropped, added, misspelt) and half unrelated sentences,
each asked with the language the engine would pass. Prints build time, memory (RSS growth of the process),
per-query median and p99 in milliseconds (elapsed and CPU time: on a shared machine the elapsed p99 is
mostly other processes), and how often a reworded query still finds its entry in the top 3.

Every new question costs the sentence encoder ~2-3 ms whatever the KB's size (bot/semantic.py), and building
encodes every phrasing once (~2 ms each, kept for the process). What must not grow with the KB is the rest:
up to 20k phrasings a language every question is compared with every phrasing's vector (~1 ms at 10k), past
that only with the lexical short list. Measured (2 cores, 2026-12-02): p50/p99 2.9/3.9 ms at 1k, 4.3/6.3 ms
at 10k, 7.6/10.4 ms at 100k phrasings (build 207 s, 575 MiB with the model).

    .venv/bin/python benchmarks/matcher_speed.py [--sizes 1000,10000,100000] [--queries 2000] [--seed 1]
"""

from __future__ import annotations

import argparse
import gc
import math
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import bot.matcher as matcher_module  # noqa: E402
from bot.matcher import Matcher  # noqa: E402
from bot.models import FaqEntry  # noqa: E402
from bot.normalize import Normalizer, detect_lang  # noqa: E402

PHRASINGS_PER_ENTRY = 5

EN_WORDS = (
    "how can i do you my the a to is it order return refund ship shipping delivery track package item product "
    "size color price discount coupon code payment card pay invoice receipt account password login email "
    "phone address change cancel exchange warranty repair broken damaged missing late when where what why "
    "long days week store pickup gift wrap stock available sale member points reward subscription plan "
    "install assembly manual battery charger cable screen sofa table chair lamp kettle fridge washer dryer "
    "fan heater blanket pillow mattress frame curtain rug vacuum cleaner blender toaster oven microwave "
    "international customs tax fee free express standard tomorrow today weekend holiday open hours contact "
    "support agent human chat call back complaint quality wrong missing part replacement voucher balance"
).split()
ZH_WORDS = (
    "怎么 如何 可以 能 吗 什么 时候 多久 为什么 我的 订单 退货 退款 换货 发货 快递 物流 运费 包邮 发票 "
    "收据 优惠券 优惠 折扣 价格 会员 积分 账号 密码 登录 手机 地址 修改 取消 保修 维修 坏了 破损 缺件 "
    "安装 说明书 电池 充电器 屏幕 沙发 桌子 椅子 台灯 水壶 冰箱 洗衣机 烘干机 风扇 取暖器 毯子 枕头 床垫 "
    "窗帘 地毯 吸尘器 搅拌机 烤面包机 烤箱 微波炉 国际 海关 税费 免费 加急 标准 明天 今天 周末 节假日 营业 "
    "时间 联系 客服 人工 投诉 质量 错误 配件 更换 代金券 余额 颜色 尺寸 库存 现货 预售 礼品 包装 自提 门店"
).split()
ZH_CHARS = "的一是不了人我在有他这中大来上个国到说们为子和你地出道也时年得就那要下以生会自着去之过家学对可她里后小么心多天而能好都然没日于起还发成事只作当想看文无开手十用主行方又如前所本见经头面公同三已老从动两长知民样现"
SYLLABLES = ("ka", "lo", "mi", "ra", "to", "sen", "vor", "pel", "dan", "qu", "zi", "bex", "nor", "lin", "tar")


def _zipf_choice(rng: random.Random, words: list[str]) -> str:
    """Rank r drawn with probability about 1/r (log-uniform), as word frequencies go."""
    return words[min(int(math.exp(rng.random() * math.log(len(words)))) - 1, len(words) - 1)]


class Vocabulary:
    """Shop words first (frequent), then a long tail of made-up names (rare)."""

    def __init__(self, rng: random.Random) -> None:
        tail_en = ["".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 3))) for _ in range(20_000)]
        tail_zh = ["".join(rng.choice(ZH_CHARS) for _ in range(2)) for _ in range(20_000)]
        self.words = {"en": list(EN_WORDS) + tail_en, "zh": list(ZH_WORDS) + tail_zh}
        self.rng = rng

    def sentence(self, lang: str) -> str:
        n = self.rng.randint(3, 9)
        words = [_zipf_choice(self.rng, self.words[lang]) for _ in range(n)]
        return (" " if lang == "en" else "").join(words)


def make_kb(size: int, rng: random.Random) -> list[FaqEntry]:
    vocab = Vocabulary(rng)
    entries = []
    for i in range(size // PHRASINGS_PER_ENTRY):
        lang = "zh" if i % 2 else "en"
        topic = vocab.sentence(lang)
        phrasings = [topic] + [_variant(rng, topic, lang, vocab) for _ in range(PHRASINGS_PER_ENTRY - 1)]
        entries.append(FaqEntry(id=f"e{i}", question=phrasings[0], similar=tuple(phrasings[1:]), answer="-",
                                lang=lang))
    return entries


def _variant(rng: random.Random, text: str, lang: str, vocab: Vocabulary) -> str:
    """A rewording: some words dropped or added, one possibly misspelt."""
    parts = text.split() if lang == "en" else [text[i : i + 2] for i in range(0, len(text), 2)]
    parts = [p for p in parts if rng.random() > 0.25] or parts[:1]
    for _ in range(rng.randint(0, 2)):
        parts.insert(rng.randint(0, len(parts)), _zipf_choice(rng, vocab.words[lang]))
    if lang == "en" and rng.random() < 0.3:
        j = rng.randrange(len(parts))
        word = parts[j]
        if len(word) > 3:
            k = rng.randrange(len(word) - 1)
            parts[j] = word[:k] + word[k + 1] + word[k] + word[k + 2 :]
    return (" " if lang == "en" else "").join(parts)


def make_queries(entries: list[FaqEntry], count: int, rng: random.Random) -> list[tuple[str, str | None]]:
    """(query, entry it rewords, or None for an unrelated sentence)."""
    vocab = Vocabulary(random.Random(rng.random()))
    queries: list[tuple[str, str | None]] = []
    for i in range(count):
        if i % 2:
            queries.append((vocab.sentence(rng.choice(("en", "zh"))), None))
        else:
            entry = rng.choice(entries)
            queries.append((_variant(rng, rng.choice(entry.phrasings), entry.lang, vocab), entry.id))
    return queries


def _p99(sorted_times: list[float]) -> float:
    return sorted_times[int(len(sorted_times) * 0.99)]


def rss_bytes() -> int:
    with open("/proc/self/statm", encoding="ascii") as f:
        return int(f.read().split()[1]) * 4096


def run(size: int, queries: int, seed: int) -> None:
    rng = random.Random(seed)
    entries = make_kb(size, rng)
    asked = make_queries(entries, queries, rng)
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    matcher = Matcher(entries, Normalizer())
    build = time.perf_counter() - start
    gc.collect()
    memory = (rss_bytes() - before) / 2**20
    times, cpu, found = [], [], 0
    for text, gold in asked:
        lang = detect_lang(text)
        t0, c0 = time.perf_counter(), time.thread_time()
        result = matcher.match(text, lang=lang)
        times.append((time.perf_counter() - t0) * 1000)
        cpu.append((time.thread_time() - c0) * 1000)
        found += gold is not None and gold in [c.entry_id for c in result.candidates]
    times.sort()
    cpu.sort()
    phrasings = sum(len(e.phrasings) for e in entries)
    reworded = sum(gold is not None for _, gold in asked)
    print(f"{phrasings:>9} {len(entries):>8} {build:>8.2f} {memory:>8.1f} {statistics.median(times):>10.3f} "
          f"{_p99(times):>8.3f} {statistics.median(cpu):>10.3f} {_p99(cpu):>8.3f} {100 * found / reworded:>7.1f}",
          flush=True)
    del matcher


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--budget", type=int, help="override the matcher's posting budget (to compare)")
    args = parser.parse_args()
    if args.budget:
        matcher_module._POSTING_BUDGET = args.budget
    print("wall = elapsed time per query; cpu = this thread's CPU time (unaffected by other processes); "
          "top-3 = reworded queries whose entry is among the 3 candidates")
    print(f"{'phrasings':>9} {'entries':>8} {'build s':>8} {'RSS MiB':>8} {'wall p50':>10} {'wall p99':>8} "
          f"{'cpu p50':>10} {'cpu p99':>8} {'top-3 %':>7}")
    for size in (int(s) for s in args.sizes.split(",")):
        run(size, args.queries, args.seed)


if __name__ == "__main__":
    main()
