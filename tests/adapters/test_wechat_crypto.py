"""Safe-mode crypto against Tencent's published sample and wechatpy's vectors, plus refusals and round trips."""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from hypothesis import given
from hypothesis import strategies as st

from adapters import wechat_xml
from adapters.wechat_crypto import WechatCrypto, WechatCryptoError, WechatSignatureError
from adapters.wechat_xml import WechatXmlError, extract_encrypted, parse_message


@dataclass(frozen=True)
class Vector:
    token: str
    key: str
    app_id: str
    timestamp: str
    nonce: str
    msg_signature: str
    encrypt: str


# Tencent's WXBizMsgCrypt Python sample (Sample.py, "测试解密接口").
SAMPLE = Vector(
    token="spamtest",
    key="abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    app_id="wx2c2769f8efd9abc2",
    timestamp="1409735669",
    nonce="1320562132",
    msg_signature="5d197aaffba7e9b25a30732f161a50dee96bd5fa",
    encrypt=(
        "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9"
        "FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3y"
        "t+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v"
        "6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE="
    ),
)

# wechatpy tests/test_crypto.py (same scheme, a work-account id in the app-id slot).
WECHATPY = Vector(
    token="123456",
    key="kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
    app_id="wx49f0ab532d5d035a",
    timestamp="1411525903",
    nonce="461056294",
    msg_signature="74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
    encrypt=(
        "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymz"
        "xh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIi"
        "OAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvc"
        "cTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0="
    ),
)
# wechatpy's known-answer encryption: this reply with the random prefix fixed to "1234567890123456".
WECHATPY_REPLY = (
    "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n"
    "<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n"
    "<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>"
)
WECHATPY_REPLY_ENCRYPT = (
    "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObve"
    "sEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrr"
    "NrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPo"
    "QJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
)
WECHATPY_REPLY_SIGNATURE = "407518b7649e86ef23978113f92d27afa9296533"


def crypto(v: Vector = SAMPLE, *, app_id: str | None = None) -> WechatCrypto:
    return WechatCrypto(v.token, v.key, app_id or v.app_id)


def raw_plaintext(v: Vector, encrypt: str) -> bytes:
    """Decrypt independently of the code under test, to look at the payload layout itself."""
    key = base64.b64decode(v.key + "=")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypt)) + decryptor.finalize()


# --- published vectors ---------------------------------------------------------------------------------


def test_tencent_sample_signature_and_decryption() -> None:
    assert wechat_xml.msg_signature(SAMPLE.token, SAMPLE.timestamp, SAMPLE.nonce, SAMPLE.encrypt) == SAMPLE.msg_signature
    msg = parse_message(crypto().verify_and_decrypt(SAMPLE.msg_signature, SAMPLE.timestamp, SAMPLE.nonce, SAMPLE.encrypt))
    assert (msg.to_user, msg.from_user, msg.create_time, msg.msg_type, msg.content, msg.msg_id) == (
        "gh_10f6c3c3ac5a", "oyORnuP8q7ou2gfYjqLzSIWZf0rs", 1409735668, "text", "abcdteT", "6054768590064713728")


def test_wechatpy_vector_decrypts() -> None:
    plain = crypto(WECHATPY).verify_and_decrypt(WECHATPY.msg_signature, WECHATPY.timestamp, WECHATPY.nonce,
                                                WECHATPY.encrypt)
    msg = parse_message(plain)
    assert (msg.from_user, msg.content) == ("messense", "test")


def test_encryption_reproduces_wechatpys_known_answer() -> None:
    c = crypto(WECHATPY)
    assert c.encrypt(WECHATPY_REPLY.encode(), nonce_bytes=b"1234567890123456") == WECHATPY_REPLY_ENCRYPT
    assert wechat_xml.msg_signature(WECHATPY.token, "1411525903", "461056294",
                                    WECHATPY_REPLY_ENCRYPT) == WECHATPY_REPLY_SIGNATURE


# --- round trips ---------------------------------------------------------------------------------------


def test_chinese_round_trip_uses_the_byte_length() -> None:
    text = "<xml><Content><![CDATA[退货运费由卖家承担，七天无理由😀]]></Content></xml>".encode("utf-8")
    assert len(text) != len(text.decode("utf-8"))
    encrypt = crypto().encrypt(text)
    assert crypto().decrypt(encrypt) == text
    plain = raw_plaintext(SAMPLE, encrypt)
    assert int.from_bytes(plain[16:20], "big") == len(text)  # bytes, not characters
    assert plain[20:20 + len(text)] == text
    assert plain[20 + len(text):20 + len(text) + len(SAMPLE.app_id)] == SAMPLE.app_id.encode()
    pad = plain[-1]
    assert len(plain) % 32 == 0 and 1 <= pad <= 32 and plain[-pad:] == bytes([pad]) * pad


@given(st.binary(max_size=200))
def test_any_payload_round_trips(payload: bytes) -> None:
    assert crypto().decrypt(crypto().encrypt(payload)) == payload


def test_each_encryption_uses_fresh_random_bytes() -> None:
    a, b = crypto().encrypt(b"same"), crypto().encrypt(b"same")
    assert a != b
    assert raw_plaintext(SAMPLE, a)[:16] != raw_plaintext(SAMPLE, b)[:16]


def test_aligned_payload_gets_a_full_padding_block() -> None:
    payload = b"x" * (64 - 16 - 4 - len(SAMPLE.app_id))  # header + payload + app id = 64 bytes exactly
    plain = raw_plaintext(SAMPLE, crypto().encrypt(payload))
    assert len(plain) == 96 and plain[-32:] == bytes([32]) * 32
    assert crypto().decrypt(crypto().encrypt(payload)) == payload


def test_encrypted_reply_verifies_and_decrypts() -> None:
    reply_xml = wechat_xml.build_text_reply("oyORnuP8q7ou2gfYjqLzSIWZf0rs", "gh_10f6c3c3ac5a", "您好]]>", 1409735670)
    envelope = crypto().encrypt_reply(reply_xml, "1409735670", "98765")
    root = ET.fromstring(envelope)
    fields = {el.tag: el.text or "" for el in root}
    assert set(fields) == {"Encrypt", "MsgSignature", "TimeStamp", "Nonce"}
    assert (fields["TimeStamp"], fields["Nonce"]) == ("1409735670", "98765")
    plain = crypto().verify_and_decrypt(fields["MsgSignature"], "1409735670", "98765", fields["Encrypt"])
    assert plain == reply_xml.encode("utf-8")
    assert parse_message(plain).content == "您好]]>"


def test_random_prefix_must_be_sixteen_bytes() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        crypto().encrypt(b"x", nonce_bytes=b"short")


# --- refusals ------------------------------------------------------------------------------------------


def test_wrong_app_id_is_refused() -> None:
    encrypt = crypto(app_id="wx0000000000000000").encrypt(b"<xml/>")
    with pytest.raises(WechatCryptoError, match="another app id"):
        crypto().decrypt(encrypt)
    with pytest.raises(WechatCryptoError, match="another app id"):
        crypto(WECHATPY, app_id="wx49f0ab532d5d035b").decrypt(WECHATPY.encrypt)
    with pytest.raises(WechatCryptoError, match="another app id"):
        crypto(app_id=SAMPLE.app_id + "x").decrypt(SAMPLE.encrypt)
    longer = crypto(app_id=SAMPLE.app_id + "x").encrypt(b"<xml/>")
    with pytest.raises(WechatCryptoError, match="another app id"):  # starting with the right id is not enough
        crypto().decrypt(longer)


@pytest.mark.parametrize(("field", "value"), [
    ("msg_signature", "5d197aaffba7e9b25a30732f161a50dee96bd5fb"),
    ("msg_signature", ""),
    ("msg_signature", "签名"),
    ("timestamp", "1409735670"),
    ("nonce", "1320562133"),
])
def test_wrong_signature_is_refused(field: str, value: str) -> None:
    args = {"msg_signature": SAMPLE.msg_signature, "timestamp": SAMPLE.timestamp, "nonce": SAMPLE.nonce,
            "encrypt": SAMPLE.encrypt, field: value}
    with pytest.raises(WechatSignatureError):
        crypto().verify_and_decrypt(**args)


def test_signature_with_another_token_is_refused() -> None:
    other = WechatCrypto("othertoken", SAMPLE.key, SAMPLE.app_id)
    with pytest.raises(WechatSignatureError):
        other.verify_and_decrypt(SAMPLE.msg_signature, SAMPLE.timestamp, SAMPLE.nonce, SAMPLE.encrypt)


def flip(encrypt: str, index: int) -> str:
    data = bytearray(base64.b64decode(encrypt))
    data[index] ^= 0x01
    return base64.b64encode(bytes(data)).decode()


@pytest.mark.parametrize("index", [0, 5, 17, 100, -40, -17, -1])
def test_tampered_ciphertext_fails_the_signature(index: int) -> None:
    with pytest.raises(WechatSignatureError):
        crypto().verify_and_decrypt(SAMPLE.msg_signature, SAMPLE.timestamp, SAMPLE.nonce, flip(SAMPLE.encrypt, index))


@pytest.mark.parametrize("index", [-1, -5, -16, -17, -32])
def test_tampering_near_the_end_breaks_padding_or_app_id(index: int) -> None:
    # CBC alone is malleable (early blocks can change undetected): that is why the signature comes first.
    with pytest.raises(WechatCryptoError):
        crypto().decrypt(flip(SAMPLE.encrypt, index))


@pytest.mark.parametrize(("encrypt", "problem"), [
    ("", "AES blocks"),
    ("not base64!", "base64"),
    ("YWJj", "AES blocks"),  # 3 bytes
    (base64.b64encode(b"\0" * 32).decode(), "padding|header|length|app id"),
])
def test_malformed_ciphertext_is_refused(encrypt: str, problem: str) -> None:
    with pytest.raises(WechatCryptoError, match=problem):
        crypto().decrypt(encrypt)


def test_length_field_past_the_end_is_refused() -> None:
    key = base64.b64decode(SAMPLE.key + "=")
    body = b"r" * 16 + (1000).to_bytes(4, "big") + b"short" + SAMPLE.app_id.encode()
    pad = 32 - len(body) % 32
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    forged = base64.b64encode(encryptor.update(body + bytes([pad]) * pad) + encryptor.finalize()).decode()
    with pytest.raises(WechatCryptoError, match="length field"):
        crypto().decrypt(forged)


def test_doctype_inside_the_decrypted_payload_is_refused() -> None:
    payload = b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>' \
              b"<xml><ToUserName>gh</ToUserName><FromUserName>o</FromUserName><CreateTime>1</CreateTime>" \
              b"<MsgType>text</MsgType><Content>&b;</Content></xml>"
    c = crypto()
    encrypt = c.encrypt(payload)
    signature = wechat_xml.msg_signature(SAMPLE.token, "1", "n", encrypt)
    plain = c.verify_and_decrypt(signature, "1", "n", encrypt)
    with pytest.raises(WechatXmlError, match="refused"):
        parse_message(plain)


def test_hostile_outer_envelope_is_refused_before_decryption() -> None:
    body = b'<!DOCTYPE xml SYSTEM "file:///etc/passwd"><xml><Encrypt>' + SAMPLE.encrypt.encode() + b"</Encrypt></xml>"
    with pytest.raises(WechatXmlError, match="refused"):
        extract_encrypted(body)


@pytest.mark.parametrize(("key", "problem"), [
    ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF", "43 characters, got 42"),
    ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", "43 characters, got 44"),
    ("", "43 characters, got 0"),
    ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEF=", "letters and digits"),
    ("abcdefghijklmnopqrstuvwxyz0123456789ABCDE-_", "letters and digits"),
    ("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFé", "letters and digits"),
])
def test_bad_key_is_named_without_echoing_it(key: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem) as info:
        WechatCrypto("token", key, "wx2c2769f8efd9abc2")
    assert not key or key not in str(info.value)


@pytest.mark.parametrize(("token", "app_id", "problem"), [("", "wx1", "token"), ("t", "", "app id")])
def test_empty_token_or_app_id_is_refused(token: str, app_id: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        WechatCrypto(token, SAMPLE.key, app_id)
