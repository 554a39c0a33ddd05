"""A small hand-made knowledge base whose answers tests can assert exactly."""

from __future__ import annotations

from bot.models import FaqEntry

ENTRIES = (
    FaqEntry(
        id="zh-returns-7day",
        question="七天无理由退货怎么申请",
        similar=("买的东西不想要了可以退吗", "不喜欢了能退吗", "怎么申请退货"),
        answer="您好，本店支持**签收后7天内无理由退货**。",
        category="returns",
    ),
    FaqEntry(
        id="zh-returns-shipping",
        question="退货运费谁承担",
        similar=("退货邮费谁出", "退回去运费谁付"),
        answer="质量问题由本店承担运费，个人原因退货请您承担运费。",
        category="returns",
    ),
    FaqEntry(
        id="zh-invoice",
        question="可以开发票吗",
        similar=("怎么开发票", "发票在哪里申请"),
        answer="可以的，请您在订单详情页点击**申请发票**。",
        category="invoice",
    ),
    FaqEntry(
        id="zh-repair",
        question="电器坏了保修怎么申请",
        similar=("保修期内坏了怎么办", "东西坏了能修吗"),
        answer="本店商品享受**三包**服务，请您提供订单号和故障照片。",
        category="repair_warranty",
        needs_agent=True,
    ),
    FaqEntry(
        id="en-returns",
        question="how do i return an item",
        similar=("can i send it back", "return policy", "i want to send my order back"),
        answer="You can return items within **7 days** of delivery.",
        category="returns",
        lang="en",
    ),
)
SYNONYMS = {"zh": [["运费", "邮费"]], "en": []}
