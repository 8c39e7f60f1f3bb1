"""RSASSA-PKCS1-v1_5 / SHA-256 checks of CloudTrail digest signatures, with `cryptography`.

Never by hand: padding checked by hand is how forged signatures pass.
"""

from __future__ import annotations

import binascii
from functools import lru_cache

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from connectors.cloudtrail_digest import data_to_sign

SUPPORTED = "SHA256withRSA"


@lru_cache(maxsize=64)
def load_key(der: bytes):
    """An RSA public key from DER (SubjectPublicKeyInfo or PKCS#1), else None. Cached: loading
    a key costs more than checking a signature with it, and one key signs a chain's digests."""
    key = None
    for loader in (load_der_public_key, _pkcs1):
        try:
            key = loader(der)
            break
        except (ValueError, UnsupportedAlgorithm, TypeError):
            continue
    return key if isinstance(key, rsa.RSAPublicKey) else None


def _pkcs1(der: bytes):
    """PKCS#1 RSAPublicKey DER wrapped as SubjectPublicKeyInfo, then loaded."""
    # AlgorithmIdentifier rsaEncryption + NULL, and the key as a BIT STRING
    algo = bytes.fromhex("300d06092a864886f70d0101010500")
    bits = b"\x03" + _len(len(der) + 1) + b"\x00" + der
    body = algo + bits
    return load_der_public_key(b"\x30" + _len(len(body)) + body)


def _len(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def verify(der: bytes, signature_hex: str, end_text: str, bucket: str, key: str,
           digest_sha256: str, prev_sig: str | None) -> bool:
    """True when `signature_hex` is a valid signature of the digest's data to sign."""
    public = load_key(der)
    if public is None:
        return False
    try:
        signature = binascii.unhexlify(signature_hex.strip())
    except (binascii.Error, ValueError, AttributeError):
        return False
    try:
        public.verify(signature, data_to_sign(end_text, bucket, key, digest_sha256, prev_sig),
                      padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True
