"""WeChat callback XML: every message type, hostile XML, reply building, signatures, text splitting."""

from __future__ import annotations

import hashlib
import time
import unicodedata
import xml.etree.ElementTree as ET

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.wechat_xml import (
    _XML_INVALID,
    WechatMessage,
    WechatXmlError,
    build_encrypted_reply,
    build_text_reply,
    check_signature,
    dedup_key,
    extract_encrypted,
    parse_message,
    plain_markup,
    split_text,
)

ACCOUNT = "gh_7f083739789a"
OPENID = "oia2TjjewbmiOUlr6X-1crbLOvLw"


def callback(msg_type: str, body: str, *, create_time: int = 1409735668, sender: str = OPENID) -> bytes:
    return (
        f"<xml><ToUserName><![CDATA[{ACCOUNT}]]></ToUserName><FromUserName><![CDATA[{sender}]]></FromUserName>"
        f"<CreateTime>{create_time}</CreateTime><MsgType><![CDATA[{msg_type}]]></MsgType>{body}</xml>"
    ).encode("utf-8")


def event(name: str, key: str | None = None, *, create_time: int = 1409735668, sender: str = OPENID) -> bytes:
    key_xml = "" if key is None else f"<EventKey><![CDATA[{key}]]></EventKey>"
    return callback("event", f"<Event><![CDATA[{name}]]></Event>{key_xml}", create_time=create_time, sender=sender)


# --- parsing every message type -------------------------------------------------------------------------


def test_text_message_keeps_chinese_content_exactly() -> None:
    msg = parse_message(callback("text", "<Content><![CDATA[ 退货运费谁出？ ]]></Content><MsgId>6054768590064713728</MsgId>"))
    assert msg == WechatMessage(
        to_user=ACCOUNT, from_user=OPENID, create_time=1409735668, msg_type="text",
        msg_id="6054768590064713728", content=" 退货运费谁出？ ", raw=msg.raw,
    )
    assert msg.raw["Content"] == " 退货运费谁出？ "


def test_image_message() -> None:
    msg = parse_message(callback("image", "<PicUrl><![CDATA[http://mmbiz/1.jpg]]></PicUrl>"
                                          "<MediaId><![CDATA[media_1]]></MediaId><MsgId>101</MsgId>"))
    assert (msg.msg_type, msg.media_id, msg.msg_id, msg.content) == ("image", "media_1", "101", None)
    assert msg.raw["PicUrl"] == "http://mmbiz/1.jpg"


def test_voice_with_recognition_has_the_recognised_text_as_content() -> None:
    msg = parse_message(callback("voice", "<MediaId><![CDATA[v1]]></MediaId><Format><![CDATA[amr]]></Format>"
                                          "<Recognition><![CDATA[我的快递到哪了]]></Recognition><MsgId>102</MsgId>"))
    assert (msg.msg_type, msg.media_id, msg.content) == ("voice", "v1", "我的快递到哪了")


@pytest.mark.parametrize("recognition", ["", "<Recognition><![CDATA[]]></Recognition>"])
def test_voice_without_recognition_has_no_content(recognition: str) -> None:
    msg = parse_message(callback("voice", f"<MediaId>v2</MediaId><Format>amr</Format>{recognition}<MsgId>103</MsgId>"))
    assert (msg.msg_type, msg.media_id, msg.content, msg.msg_id) == ("voice", "v2", None, "103")


@pytest.mark.parametrize("kind", ["video", "shortvideo"])
def test_video_messages(kind: str) -> None:
    msg = parse_message(callback(kind, "<MediaId>m3</MediaId><ThumbMediaId>t3</ThumbMediaId><MsgId>104</MsgId>"))
    assert (msg.msg_type, msg.media_id, msg.raw["ThumbMediaId"], msg.content) == (kind, "m3", "t3", None)


def test_location_message() -> None:
    msg = parse_message(callback("location", "<Location_X>23.134521</Location_X><Location_Y>113.358803</Location_Y>"
                                             "<Scale>20</Scale><Label><![CDATA[广州市天河区]]></Label><MsgId>105</MsgId>"))
    assert msg.msg_type == "location" and msg.content is None
    assert (msg.raw["Location_X"], msg.raw["Location_Y"], msg.raw["Label"]) == ("23.134521", "113.358803", "广州市天河区")


def test_link_message() -> None:
    msg = parse_message(callback("link", "<Title><![CDATA[订单]]></Title><Description><![CDATA[d]]></Description>"
                                         "<Url><![CDATA[https://shop.example/o/1]]></Url><MsgId>106</MsgId>"))
    assert (msg.msg_type, msg.raw["Url"], msg.raw["Title"], msg.content) == ("link", "https://shop.example/o/1", "订单", None)


def test_file_message() -> None:
    msg = parse_message(callback("file", "<Title>发票.pdf</Title><FileKey>k</FileKey><FileMd5>abc</FileMd5>"
                                         "<FileTotalLen>2048</FileTotalLen><MsgId>107</MsgId>"))
    assert (msg.msg_type, msg.raw["Title"], msg.raw["FileTotalLen"], msg.msg_id) == ("file", "发票.pdf", "2048", "107")


@pytest.mark.parametrize(("name", "key", "want_event", "want_key"), [
    ("subscribe", None, "subscribe", None),
    ("subscribe", "qrscene_123", "subscribe", "qrscene_123"),
    ("unsubscribe", None, "unsubscribe", None),
    ("CLICK", "MENU_ORDERS", "click", "MENU_ORDERS"),
    ("VIEW", "https://shop.example/", "view", "https://shop.example/"),
])
def test_events_are_lower_cased_and_keep_their_key(name: str, key: str | None, want_event: str,
                                                    want_key: str | None) -> None:
    msg = parse_message(event(name, key))
    assert (msg.msg_type, msg.event, msg.event_key, msg.msg_id, msg.content) == ("event", want_event, want_key, None, None)


def test_nested_event_fields_are_kept_with_a_path() -> None:
    msg = parse_message(callback("event", "<Event>scancode_push</Event><EventKey>k</EventKey><ScanCodeInfo>"
                                          "<ScanType>qrcode</ScanType><ScanResult>1</ScanResult></ScanCodeInfo>"))
    assert msg.raw["ScanCodeInfo/ScanType"] == "qrcode" and msg.event == "scancode_push"


def test_unknown_type_is_kept_not_refused() -> None:
    msg = parse_message(callback("miniprogrampage", "<Title>t</Title><AppId>wx1</AppId><MsgId>108</MsgId>"))
    assert (msg.msg_type, msg.msg_id, msg.content, msg.raw["AppId"]) == ("miniprogrampage", "108", None, "wx1")


def test_whitespace_around_identity_fields_is_ignored() -> None:
    # Tencent's own sample puts spaces before a CDATA section.
    msg = parse_message(b"<xml><ToUserName> gh_1 </ToUserName><FromUserName>\n o1\n</FromUserName>"
                        b"<CreateTime> 7 </CreateTime><MsgType>  <![CDATA[TEXT]]></MsgType><Content>hi</Content></xml>")
    assert (msg.to_user, msg.from_user, msg.create_time, msg.msg_type) == ("gh_1", "o1", 7, "text")


# --- refusing bad and hostile XML ----------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]><xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
    b"<MsgType>text</MsgType><Content>&lol9;</Content></xml>"
)
HOSTILE = {
    "xxe-system-doctype": b'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml></xml>',
    "xxe-entity": b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
                  + callback("text", "<Content>&xxe;</Content><MsgId>1</MsgId>").replace(b"<?xml", b""),
    "billion-laughs": BILLION_LAUGHS,
    "quadratic-blowup": b'<!DOCTYPE xml [<!ENTITY a "' + b"a" * 50_000 + b'">]><xml><Content>'
                        + b"&a;" * 50_000 + b"</Content></xml>",
    "parameter-entity": b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd"> %p;]><xml/>',
}


@pytest.mark.parametrize("body", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_xml_is_refused_quickly(body: bytes) -> None:
    started = time.perf_counter()
    with pytest.raises(WechatXmlError, match="refused"):
        parse_message(body)
    with pytest.raises(WechatXmlError, match="refused"):
        extract_encrypted(body)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("body", "problem"), [
    (b"", "malformed"),
    (b"not xml at all", "malformed"),
    (b"<xml><ToUserName>gh</ToUserName>", "malformed"),
    (b"<xml><Content>&undefined;</Content></xml>", "malformed"),
    (b"<msg><ToUserName>gh</ToUserName></msg>", "root element"),
    (callback("text", "").replace(b"<FromUserName><![CDATA[" + OPENID.encode() + b"]]></FromUserName>", b""),
     "FromUserName"),
    (b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>"
     b"<MsgType> </MsgType></xml>", "MsgType"),
    (b"<xml/>", "ToUserName, FromUserName, CreateTime, MsgType"),
    (callback("text", "<Content>x</Content>", create_time=1).replace(b">1<", b">yesterday<"), "CreateTime"),
    (callback("text", "<Content>x</Content>", create_time=1).replace(b">1<", b">-1<"), "CreateTime"),
])
def test_broken_messages_are_refused_with_a_reason(body: bytes, problem: str) -> None:
    with pytest.raises(WechatXmlError, match=problem):
        parse_message(body)


@settings(max_examples=300)
@given(st.binary(max_size=300) | st.text(max_size=200).map(lambda t: f"<xml>{t}</xml>".encode()))
def test_any_body_parses_or_raises_only_wechat_xml_error(body: bytes) -> None:
    try:
        parse_message(body)
    except WechatXmlError:
        pass


# --- dedup keys ----------------------------------------------------------------------------------------


def test_dedup_key_is_the_msg_id_for_messages() -> None:
    first = parse_message(callback("text", "<Content>a</Content><MsgId>55</MsgId>"))
    retry = parse_message(callback("text", "<Content>a</Content><MsgId>55</MsgId>"))
    other = parse_message(callback("text", "<Content>a</Content><MsgId>56</MsgId>"))
    assert dedup_key(first) == dedup_key(retry) == "55"
    assert dedup_key(other) != dedup_key(first)


def test_events_without_msg_id_dedup_by_sender_and_time() -> None:
    keys = {
        "retry-a": dedup_key(parse_message(event("CLICK", "MENU_1"))),
        "retry-b": dedup_key(parse_message(event("CLICK", "MENU_1"))),
        "later": dedup_key(parse_message(event("CLICK", "MENU_1", create_time=1409735669))),
        "other-user": dedup_key(parse_message(event("CLICK", "MENU_1", sender="o-other"))),
        "other-event": dedup_key(parse_message(event("VIEW", "https://shop.example/"))),
        "subscribe": dedup_key(parse_message(event("subscribe"))),
    }
    assert keys["retry-a"] == keys["retry-b"]
    assert len({v for k, v in keys.items() if k != "retry-b"}) == 5  # every other pair differs
    assert OPENID in keys["subscribe"] and "1409735668" in keys["subscribe"]


# --- replies -------------------------------------------------------------------------------------------


def test_text_reply_swaps_addresses_and_round_trips() -> None:
    reply = build_text_reply(OPENID, ACCOUNT, "您好，退货请看 1. 2. 步骤", 1409735670)
    msg = parse_message(reply.encode("utf-8"))
    assert (msg.to_user, msg.from_user, msg.create_time, msg.msg_type, msg.content) == (
        OPENID, ACCOUNT, 1409735670, "text", "您好，退货请看 1. 2. 步骤")


@given(st.text(st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\r"), min_size=1,
               max_size=300).filter(lambda t: t.strip() and t == _XML_INVALID.sub("", t)))
def test_any_text_a_reply_carries_parses_back_exactly(content: str) -> None:
    """What the parser collects piece by piece (CDATA split at ]]>, line breaks, entities) comes back whole.
    (Not \r: XML reads every \r\n and \r as \n, whatever the parser.)"""
    assert parse_message(build_text_reply(OPENID, ACCOUNT, content, 1).encode("utf-8")).content == content


@pytest.mark.parametrize("content", ["a]]>b", "]]>", "]]]]>>", "x]]><Content>evil</Content><![CDATA[", "<b>&amp;</b>"])
def test_reply_content_cannot_break_out_of_cdata(content: str) -> None:
    root = ET.fromstring(build_text_reply(OPENID, ACCOUNT, content, 1))
    assert [el.tag for el in root] == ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content"]
    assert root.findtext("Content") == content


def test_reply_drops_characters_xml_cannot_carry() -> None:
    root = ET.fromstring(build_text_reply(OPENID, ACCOUNT, "a\x00b\x1bc\ufffe\td", 1))
    assert root.findtext("Content") == "abc\td"


@pytest.mark.parametrize("content", ["", "  \n ", "\x01\x02", " \x00\ufffe\n"])
def test_empty_reply_is_refused(content: str) -> None:
    """Also when only characters XML cannot carry make it non-empty: they are dropped, and the Content with them."""
    with pytest.raises(ValueError, match="success"):
        build_text_reply(OPENID, ACCOUNT, content, 1)


def test_extract_encrypted() -> None:
    body = b"<xml><ToUserName><![CDATA[gh_10f6c3c3ac5a]]></ToUserName><Encrypt><![CDATA[abc+/=]]></Encrypt></xml>"
    assert extract_encrypted(body) == ("gh_10f6c3c3ac5a", "abc+/=")
    assert extract_encrypted(b"<xml><Encrypt>xyz</Encrypt></xml>") == (None, "xyz")
    with pytest.raises(WechatXmlError, match="Encrypt"):
        extract_encrypted(b"<xml><ToUserName>gh</ToUserName><Encrypt> </Encrypt></xml>")


def test_encrypted_reply_envelope() -> None:
    root = ET.fromstring(build_encrypted_reply("ZW5j]]>", "sig", "1411525903", "461056294"))
    assert {el.tag: el.text for el in root} == {
        "Encrypt": "ZW5j]]>", "MsgSignature": "sig", "TimeStamp": "1411525903", "Nonce": "461056294"}
    with pytest.raises(ValueError, match="timestamp"):
        build_encrypted_reply("e", "s", "1</TimeStamp><x>", "n")


# --- signatures ----------------------------------------------------------------------------------------


def test_plain_signature_accepts_the_right_one_only() -> None:
    good = hashlib.sha1(b"".join(sorted([b"spamtest", b"1409735669", b"1320562132"]))).hexdigest()
    assert check_signature("spamtest", good, "1409735669", "1320562132")
    assert not check_signature("spamtest", good, "1409735670", "1320562132")
    assert not check_signature("othertoken", good, "1409735669", "1320562132")
    assert not check_signature("spamtest", good.upper(), "1409735669", "1320562132")
    assert not check_signature("spamtest", "", "1409735669", "1320562132")
    assert not check_signature("spamtest", "签名", "1409735669", "1320562132")  # non-ASCII: False, no TypeError


# --- split_text ----------------------------------------------------------------------------------------


def size(text: str) -> int:
    return len(text.encode("utf-8"))


def squeeze(text: str) -> str:
    return "".join(text.split())


def test_short_text_is_one_part() -> None:
    assert split_text("您好") == ["您好"]
    assert split_text("  \n\n ") == []


def test_split_prefers_paragraphs() -> None:
    paras = ["第一段。" * 30, "第二段。" * 30, "第三段。" * 30]  # 360 bytes each
    parts = split_text("\n\n".join(paras), limit_bytes=800)
    assert parts == ["\n\n".join(paras[:2]), paras[2]]


def test_split_prefers_numbered_points_over_other_lines() -> None:
    text = "退货步骤如下：\n1. 打开订单\n页面底部\n2. 点申请退货\n3. 寄回商品"
    parts = split_text(text, limit_bytes=size("退货步骤如下：\n1. 打开订单\n页面底部\n2."))
    assert parts == ["退货步骤如下：\n1. 打开订单\n页面底部", "2. 点申请退货\n3. 寄回商品"]


def test_split_falls_back_to_sentences() -> None:
    text = "运费由买家承担。" * 10 + "Seven days. No questions! "  # one line
    parts = split_text(text, limit_bytes=60)
    assert all(size(p) <= 60 for p in parts)
    assert all(p.endswith(("。", ".", "!")) for p in parts)
    assert squeeze("".join(parts)) == squeeze(text)


def test_only_an_overlong_sentence_is_cut_and_never_inside_a_character() -> None:
    long_sentence = "退" * 30  # 90 bytes, no boundary
    parts = split_text("好的。" + long_sentence + "。", limit_bytes=40)
    assert parts[0] == "好的。"
    assert all(size(p) <= 40 for p in parts)
    assert "".join(parts) == "好的。" + long_sentence + "。"
    assert split_text("😀" * 5, limit_bytes=7) == ["😀", "😀", "😀", "😀", "😀"]


def test_hard_split_prefers_a_space() -> None:
    assert split_text("aaaa bbbb cccc", limit_bytes=10) == ["aaaa bbbb", "cccc"]


def test_limit_must_fit_a_character() -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        split_text("abc", limit_bytes=3)


@settings(max_examples=300)
@given(
    text=st.lists(st.sampled_from(["退货", "。", "\n", "\n\n", "1. ", "2、", " ", "ok", ". ", "😀", "é", "！", "a"]),
                  max_size=400).map("".join) | st.text(max_size=600),
    limit=st.integers(min_value=4, max_value=120),
)
def test_split_parts_fit_and_keep_everything(text: str, limit: int) -> None:
    parts = split_text(text, limit_bytes=limit)
    assert all(0 < size(p) <= limit for p in parts)
    assert all(p == p.strip() for p in parts)
    assert squeeze("".join(parts)) == squeeze(text)


def test_default_limit_is_under_wechats_2048_bytes() -> None:
    parts = split_text("这是一句很长的说明。" * 500)
    assert len(parts) > 1 and all(size(p) <= 2000 for p in parts)


# --- plain_markup --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("markup", "plain"), [
    ("退货运费 **由卖家承担**。", "退货运费【由卖家承担】。"),
    ("您排在第 **5** 位，预计等待 **3 分钟**", "您排在第【5】位，预计等待【3 分钟】"),
    ("within **7 days** of delivery", "within 【7 days】 of delivery"),
    ("价格 **$5** only", "价格【$5】 only"),
    ("查看 [退货政策](https://shop.example/returns) 了解详情", "查看 退货政策: https://shop.example/returns 了解详情"),
    ("按[安装收费标准](https://example.com/install-fees)收费；",
     "按安装收费标准: https://example.com/install-fees 收费；"),
    ("见[价目表](https://e.example/a)。", "见价目表: https://e.example/a。"),
    ("见[价目表](https://e.example/a)（第3页）", "见价目表: https://e.example/a（第3页）"),
    ("see the [list](https://e.example/a).", "see the list: https://e.example/a."),
    ("[list](https://e.example/a)/b", "list: https://e.example/a /b"),
    ("**[重要](https://s.example/i)**收费", "【重要: https://s.example/i】收费"),
    ("[https://shop.example/](https://shop.example/)", "https://shop.example/"),
    ("步骤：\n1. **打开订单**\n2. 点 [申请](https://s.example/a)", "步骤：\n1. 【打开订单】\n2. 点 申请: https://s.example/a"),
    ("[**重要**](https://s.example/i)", "【重要】: https://s.example/i"),
    ("2 ** 3 and [not a link](javascript:alert(1))", "2 ** 3 and [not a link](javascript:alert(1))"),
    ("**a\nb**", "**a\nb**"),
])
def test_plain_markup(markup: str, plain: str) -> None:
    assert plain_markup(markup) == plain


def _url_ends(text: str, url: str) -> bool:
    """Every `url` in `text` is followed by nothing, whitespace or punctuation a link detector stops at."""
    for at in (i for i in range(len(text)) if text.startswith(url, i)):
        after = text[at + len(url):at + len(url) + 1]
        if not (after == "" or after.isspace() or after in ".,;:!?)]'\""
                or (not after.isascii() and unicodedata.category(after).startswith("P"))):
            return False
    return True


LINK = "[价目表](https://e.example/fees)"


@settings(max_examples=300)
@given(st.lists(st.sampled_from([LINK, "收费", "ab", "5", "/", "-", "**", " ", "\n", "。", "，", ".", ")", "（"]),
                max_size=30).map("".join))
def test_a_link_never_runs_into_the_text_after_it(markup: str) -> None:
    plain = plain_markup(markup)
    assert _url_ends(plain, "https://e.example/fees"), plain
    unmarked = str.maketrans("", "", "*【】")  # bold's ** become 【】 (or stay, unpaired)
    assert squeeze(plain).translate(unmarked) == squeeze(markup.replace(LINK, "价目表:https://e.example/fees")
                                                         ).translate(unmarked)  # nothing but spaces changes
