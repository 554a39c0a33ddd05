"""WeChat safe-mode message encryption (Tencent's "WXBizMsgCrypt" scheme) on the `cryptography` library.

Payload inside the AES-256-CBC ciphertext: 16 random bytes, the message length as 4 big-endian bytes
(a *byte* count: Chinese text breaks code that counts characters), the message, the app id, then PKCS#7
padding to a multiple of 32 bytes. The key is the base64-decoded EncodingAESKey; the IV its first 16 bytes.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import os
import re

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from adapters import wechat_xml

KEY_CHARS = 43  # 43 base64 characters + "=" decode to the 32-byte AES-256 key
PAD_BLOCK = 32  # Tencent pads to 32 bytes, not AES's 16: a 16-byte unpadder rejects valid messages
RANDOM_BYTES = 16  # fresh per message, so equal replies never give equal ciphertexts
LENGTH_BYTES = 4
AES_BLOCK = 16
_KEY_FORMAT = re.compile(r"[A-Za-z0-9+/]{43}")


class WechatCryptoError(ValueError):
    """An Encrypt payload we refuse: not base64, bad length or padding, or addressed to another app id."""


class WechatSignatureError(WechatCryptoError):
    """msg_signature does not match: the request did not come from WeChat (→ 401/403, not 400)."""


class WechatCrypto:
    """Decrypts safe-mode callbacks and encrypts their replies for one Official Account."""

    def __init__(self, token: str, encoding_aes_key: str, app_id: str) -> None:
        if not token:
            raise ValueError("WeChat token is empty")
        if not app_id:
            raise ValueError("WeChat app id is empty")
        # Never echo the key itself in an error: it is a secret.
        if len(encoding_aes_key) != KEY_CHARS:
            raise ValueError(f"EncodingAESKey must be {KEY_CHARS} characters, got {len(encoding_aes_key)}")
        if not _KEY_FORMAT.fullmatch(encoding_aes_key):
            raise ValueError("EncodingAESKey may hold only letters and digits (base64 without '=')")
        self._token = token
        self._key = base64.b64decode(encoding_aes_key + "=")
        self._iv = self._key[:AES_BLOCK]  # fixed by the protocol; the random prefix makes messages unique
        self._app_id = app_id.encode("utf-8")

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._iv))

    def decrypt(self, encrypt_b64: str) -> bytes:
        """The message inside an Encrypt text, after checking its padding, length field and app id."""
        try:
            data = base64.b64decode(encrypt_b64, validate=True)
        except (binascii.Error, ValueError):
            raise WechatCryptoError("Encrypt is not base64") from None
        if not data or len(data) % AES_BLOCK:
            raise WechatCryptoError("ciphertext is not a whole number of AES blocks")
        decryptor = self._cipher().decryptor()
        padded = decryptor.update(data) + decryptor.finalize()
        pad = padded[-1]
        if not 1 <= pad <= PAD_BLOCK or padded[-pad:] != bytes([pad]) * pad:
            raise WechatCryptoError("bad padding")
        plain = padded[:-pad]
        header = RANDOM_BYTES + LENGTH_BYTES
        if len(plain) < header:
            raise WechatCryptoError("payload shorter than its header")
        end = header + int.from_bytes(plain[RANDOM_BYTES:header], "big")
        if end > len(plain):
            raise WechatCryptoError("length field runs past the payload")
        # A payload for another account must not be accepted even when it decrypts cleanly.
        if not hmac.compare_digest(plain[end:], self._app_id):
            raise WechatCryptoError("payload is addressed to another app id")
        return plain[header:end]

    def encrypt(self, plain: bytes, nonce_bytes: bytes | None = None) -> str:
        """Base64 Encrypt text for `plain`; `nonce_bytes` (16) is only for reproducing known vectors."""
        prefix = os.urandom(RANDOM_BYTES) if nonce_bytes is None else nonce_bytes
        if len(prefix) != RANDOM_BYTES:
            raise ValueError(f"nonce_bytes must be {RANDOM_BYTES} bytes")
        body = prefix + len(plain).to_bytes(LENGTH_BYTES, "big") + plain + self._app_id
        pad = PAD_BLOCK - len(body) % PAD_BLOCK  # 1..32: a full block when already aligned
        encryptor = self._cipher().encryptor()
        data = encryptor.update(body + bytes([pad]) * pad) + encryptor.finalize()
        return base64.b64encode(data).decode("ascii")

    def verify_and_decrypt(self, msg_signature: str, timestamp: str, nonce: str, encrypt: str) -> bytes:
        """Check the request's msg_signature (constant time) before touching the ciphertext, then decrypt."""
        expected = wechat_xml.msg_signature(self._token, timestamp, nonce, encrypt)
        if not hmac.compare_digest(expected.encode("ascii"), msg_signature.encode("utf-8")):
            raise WechatSignatureError("msg_signature does not match")
        return self.decrypt(encrypt)

    def encrypt_reply(self, xml: str, timestamp: str, nonce: str) -> str:
        """The full safe-mode reply: the encrypted `xml` with its own MsgSignature, TimeStamp and Nonce."""
        encrypt = self.encrypt(xml.encode("utf-8"))
        signature = wechat_xml.msg_signature(self._token, timestamp, nonce, encrypt)
        return wechat_xml.build_encrypted_reply(encrypt, signature, timestamp, nonce)
