"""WeChat Official Account callback wire format: safe XML parsing, reply building, signatures, text shaping.

Pure functions only (no aiohttp), so every protocol rule is testable without a server. The webhook owns
HTTP; wechat_crypto owns AES. Protocol as Tencent documents it ("Passive user reply message", "message
encryption"); the traps we guard against are listed in shared/wechat-notes.md.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from xml.parsers import expat

REQUIRED_FIELDS = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
TEXT_LIMIT_BYTES = 2000  # WeChat refuses or cuts text past about 2,048 bytes; keep a margin below it

# Characters XML 1.0 cannot carry at all; one of them in a reply makes WeChat drop the whole reply.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_DIGITS = re.compile(r"[0-9]{1,20}")

# split_text boundaries, most preferred first; a cut goes right after each match.
_BOUNDARIES = (
    re.compile(r"\n[ \t]*\n\s*"),  # a blank line between paragraphs
    re.compile(r"\n(?=[ \t]*[0-9]{1,3}[.、．)）])"),  # the line break before a numbered point
    re.compile(r"\n"),  # any line break
    re.compile(r"[。！？!?；;…]+[”’」』）)\]]*[ \t]*|[.](?:[ \t]+|$)"),  # the end of a sentence
)

_BOLD = re.compile(r"([ \t]*)\*\*(.+?)\*\*([ \t]*)")
_LINK = re.compile(r"\[([^\]\n]+)\]\((https?://[^\s)]+)\)")
# Chinese text and its full-width punctuation: 【】 bring their own spacing, a space beside them is a gap.
_WIDE = re.compile("[\u2e80-\u9fff\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef]")
# ASCII that link detectors leave off the end of a URL; any other ASCII after it would join the link.
_URL_STOPS = frozenset(".,;:!?)]'\"")


class WechatXmlError(ValueError):
    """A callback body we refuse: malformed, carrying a DTD/entities, wrong root or missing fields (→ 4xx)."""


@dataclass(frozen=True)
class WechatMessage:
    """One callback message or event; an unknown MsgType keeps only the common fields and `raw`."""

    to_user: str
    from_user: str
    create_time: int
    msg_type: str
    msg_id: str | None = None
    content: str | None = None  # text Content, or a voice message's Recognition
    event: str | None = None  # lower-cased: "subscribe", "click", …
    event_key: str | None = None
    media_id: str | None = None
    raw: dict[str, str] = field(default_factory=dict)


def _fields(body: bytes) -> dict[str, str]:
    """Leaf texts by tag below <xml>; nested leaves (ScanCodeInfo/ScanType) get a slash path, and the first
    duplicate wins.

    expat itself, with any DTD refused at its first byte, before an entity can be declared or a file fetched
    (XXE and entity expansion have hit WeChat SDKs repeatedly; a callback never carries a DTD). The payload is
    a few flat fields: collected as they stream past, three times faster than building an element tree."""
    parser = expat.ParserCreate()
    fields: dict[str, str] = {}
    path: list[str] = []
    text: list[str] = []
    leaf = False  # the open element has no child (yet)

    def start(tag: str, _attributes: dict[str, str]) -> None:
        nonlocal leaf
        if not path and tag != "xml":
            raise WechatXmlError(f"root element must be <xml>, got <{tag}>")
        path.append(tag)
        text.clear()
        leaf = True

    def end(_tag: str) -> None:
        nonlocal leaf
        if leaf and len(path) > 1:
            fields.setdefault("/".join(path[1:]), "".join(text))
        path.pop()
        leaf = False

    def refuse(*_: object) -> None:
        raise WechatXmlError("refused XML: DTD")

    parser.StartDoctypeDeclHandler = refuse  # entities can only be declared inside a DTD
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text.append
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise WechatXmlError(f"malformed XML: {exc}") from None
    except (ValueError, LookupError) as exc:  # an encoding expat cannot read (GBK, an unknown name): WeChat sends UTF-8
        raise WechatXmlError(f"unsupported XML encoding: {exc}") from None
    return fields


def parse_message(body: bytes) -> WechatMessage:
    """Parse a (decrypted) callback body; never fails on an unknown MsgType, only on unsafe or broken XML."""
    raw = _fields(body)
    missing = [name for name in REQUIRED_FIELDS if not raw.get(name, "").strip()]
    if missing:
        raise WechatXmlError(f"missing required fields: {', '.join(missing)}")
    create_time = raw["CreateTime"].strip()
    if not _DIGITS.fullmatch(create_time):
        raise WechatXmlError("CreateTime must be Unix seconds")

    def opt(name: str) -> str | None:
        value = raw.get(name, "").strip()
        return value or None

    msg_type = raw["MsgType"].strip().lower()
    content: str | None = None
    if msg_type == "text":
        content = raw.get("Content")
    elif msg_type == "voice":
        content = raw.get("Recognition") or None  # present only with speech recognition switched on
    event = opt("Event")
    return WechatMessage(
        to_user=raw["ToUserName"].strip(),
        from_user=raw["FromUserName"].strip(),
        create_time=int(create_time),
        msg_type=msg_type,
        msg_id=opt("MsgId"),
        content=content,
        event=event.lower() if event else None,
        event_key=opt("EventKey"),
        media_id=opt("MediaId"),
        raw=raw,
    )


def dedup_key(msg: WechatMessage) -> str:
    """The identity Tencent's retries share: MsgId for messages; events have none, so sender + time + event."""
    if msg.msg_id:
        return msg.msg_id
    return f"{msg.from_user}:{msg.create_time}:{msg.event or msg.msg_type}:{msg.event_key or ''}"


def xml_text(text: str) -> str:
    """`text` without the characters XML cannot carry: what of it a reply would actually hold."""
    return _XML_INVALID.sub("", text)


def _cdata(text: str) -> str:
    """A CDATA section that cannot be broken out of: `]]>` is split across two sections."""
    return "<![CDATA[" + xml_text(text).replace("]]>", "]]]]><![CDATA[>") + "]]>"


def build_text_reply(to_user: str, from_user: str, content: str, create_time: int) -> str:
    """A passive text reply. Content that is empty once XML's invalid characters are gone is refused:
    WeChat shows "该公众号暂时无法提供服务" for it. Check with `xml_text` first to answer `success` instead."""
    if not xml_text(content).strip():
        raise ValueError("empty reply content: answer 'success' (or an empty body) instead")
    return (
        "<xml>"
        f"<ToUserName>{_cdata(to_user)}</ToUserName>"
        f"<FromUserName>{_cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        "<MsgType><![CDATA[text]]></MsgType>"
        f"<Content>{_cdata(content)}</Content>"
        "</xml>"
    )


def extract_encrypted(body: bytes) -> tuple[str | None, str]:
    """The outer envelope of a safe-mode callback: (ToUserName if present, the Encrypt text)."""
    raw = _fields(body)
    encrypt = raw.get("Encrypt", "").strip()
    if not encrypt:
        raise WechatXmlError("missing required fields: Encrypt")
    return raw.get("ToUserName", "").strip() or None, encrypt


def build_encrypted_reply(encrypt: str, signature: str, timestamp: str, nonce: str) -> str:
    """The safe-mode reply envelope; WeChat checks MsgSignature over exactly these TimeStamp and Nonce."""
    if not _DIGITS.fullmatch(timestamp):
        raise ValueError("timestamp must be Unix seconds")
    return (
        "<xml>"
        f"<Encrypt>{_cdata(encrypt)}</Encrypt>"
        f"<MsgSignature>{_cdata(signature)}</MsgSignature>"
        f"<TimeStamp>{timestamp}</TimeStamp>"
        f"<Nonce>{_cdata(nonce)}</Nonce>"
        "</xml>"
    )


def _sha1_sorted(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode("utf-8")).hexdigest()


def check_signature(token: str, signature: str, timestamp: str, nonce: str) -> bool:
    """Plain-mode `signature` check. It covers only token, timestamp and nonce, never the body (notes §6)."""
    expected = _sha1_sorted(token, timestamp, nonce)
    # Constant time, on bytes: a str compare_digest raises on non-ASCII input from the query string.
    return hmac.compare_digest(expected.encode("ascii"), signature.encode("utf-8"))


def msg_signature(token: str, timestamp: str, nonce: str, encrypt: str) -> str:
    """Safe-mode `msg_signature`: sha1 of the sorted token, timestamp, nonce and Encrypt text."""
    return _sha1_sorted(token, timestamp, nonce, encrypt)


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _segments(text: str, boundary: re.Pattern[str]) -> list[str]:
    cuts = [0, *(m.end() for m in boundary.finditer(text) if 0 < m.end() < len(text)), len(text)]
    return [text[a:b] for a, b in zip(cuts, cuts[1:]) if b > a]


def _hard_split(text: str, limit: int) -> list[str]:
    """Cut one overlong sentence at UTF-8 character boundaries, at a space when one is near the cut."""
    parts: list[str] = []
    while _size(text) > limit:
        data = text.encode("utf-8")
        cut = limit
        while data[cut] & 0xC0 == 0x80:  # a continuation byte: back off to the start of that character
            cut -= 1
        chunk = data[:cut].decode("utf-8")
        space = chunk.rfind(" ")
        if space > len(chunk) // 2:
            chunk = chunk[: space + 1]
        parts.append(chunk)
        text = text[len(chunk):]
    return [*parts, text]


def _split(text: str, limit: int, level: int) -> list[str]:
    if _size(text) <= limit:
        return [text]
    if level == len(_BOUNDARIES):
        return _hard_split(text, limit)
    parts: list[str] = []
    current = ""
    for seg in _segments(text, _BOUNDARIES[level]):
        if _size(current) + _size(seg) <= limit:
            current += seg
            continue
        if current:
            parts.append(current)
        current = ""
        if _size(seg) <= limit:
            current = seg
        else:
            parts.extend(_split(seg, limit, level + 1))
    if current:
        parts.append(current)
    return parts


def split_text(text: str, limit_bytes: int = TEXT_LIMIT_BYTES) -> list[str]:
    """Split a long reply into messages of at most `limit_bytes` UTF-8 bytes, at the most natural boundary.

    Paragraphs first, then numbered points, lines and sentences; only a single overlong sentence is cut
    mid-way (never inside a character). The first part goes out as the passive reply, the rest by API.
    """
    if limit_bytes < 4:
        raise ValueError("limit_bytes must hold at least one UTF-8 character (4 bytes)")
    parts = (p.strip() for p in _split(text, limit_bytes, 0))
    return [p for p in parts if p]


def _ends_url(char: str) -> bool:
    """Whether `char` right after a URL stops WeChat's auto-link there (收费 would join the link)."""
    if not char or char.isspace() or char in _URL_STOPS:
        return True
    return not char.isascii() and unicodedata.category(char).startswith("P")


def plain_markup(text: str) -> str:
    """Reply markup as WeChat plain text: `**fact**` → 【fact】, `[label](url)` → `label: url` (WeChat links it).

    A space after the URL when text follows it directly keeps that text out of the link; the spaces Markdown
    needs around `**` are dropped next to Chinese (第 **5** 位 → 第【5】位), kept between English words."""

    def bold(m: re.Match[str]) -> str:
        before, after = text[m.start() - 1:m.start()], text[m.end():m.end() + 1]
        lead = "" if _WIDE.match(before) else m[1]
        trail = "" if _WIDE.match(after) else m[3]
        return f"{lead}【{m[2]}】{trail}"

    marked = _BOLD.sub(bold, text)  # bold first, so a link sees the 】 that follows it

    def link(m: re.Match[str]) -> str:
        label, url = m[1].strip(), m[2]
        gap = "" if _ends_url(marked[m.end():m.end() + 1]) else " "
        return (url if label == url else f"{label}: {url}") + gap

    return _LINK.sub(link, marked)
