"""An RSA private key in PKCS#1 PEM, made with nothing but the standard library.

kube-apiserver refuses to start without a key to sign service-account tokens, even though
nothing in deltawatch ever uses such a token. Pulling in a crypto package (or requiring the
openssl command) only to satisfy that flag would add a dependency to every machine that runs
the tests, so the key is generated here: Miller-Rabin primes and a hand-written DER encoding.
It is made once per state directory and never leaves the machine. Do not use it for anything
that needs real secrecy.
"""

from __future__ import annotations

import base64
import secrets
import textwrap

_SMALL_PRIMES = [p for p in range(3, 2000, 2) if all(p % d for d in range(3, int(p**0.5) + 1, 2))]
_PUBLIC_EXPONENT = 65537


def _is_probable_prime(n: int, rounds: int = 40) -> bool:
    """Miller-Rabin with random bases; the error probability is below 4**-rounds."""
    for p in _SMALL_PRIMES:
        if n % p == 0:
            return n == p
    d, s = n - 1, 0
    while d % 2 == 0:
        d //= 2
        s += 1
    for _ in range(rounds):
        a = 2 + secrets.randbelow(n - 3)
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _random_prime(bits: int) -> int:
    while True:
        # Top two bits set so that the product of two such primes has exactly 2*bits bits.
        candidate = secrets.randbits(bits) | (0b11 << (bits - 2)) | 1
        if (candidate - 1) % _PUBLIC_EXPONENT != 0 and _is_probable_prime(candidate):
            return candidate


def _der_length(length: int) -> bytes:
    if length < 0x80:
        return bytes([length])
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # room for the sign bit
    return b"\x02" + _der_length(len(body)) + body


def rsa_private_key_pem(bits: int = 2048) -> str:
    """Return a new RSA private key as an ``RSA PRIVATE KEY`` (PKCS#1) PEM block."""
    half = bits // 2
    while True:
        p, q = _random_prime(half), _random_prime(half)
        if p != q:
            break
    if p < q:
        p, q = q, p
    n = p * q
    d = pow(_PUBLIC_EXPONENT, -1, (p - 1) * (q - 1))
    fields = [0, n, _PUBLIC_EXPONENT, d, p, q, d % (p - 1), d % (q - 1), pow(q, -1, p)]
    body = b"".join(_der_integer(f) for f in fields)
    der = b"\x30" + _der_length(len(body)) + body
    b64 = "\n".join(textwrap.wrap(base64.b64encode(der).decode("ascii"), 64))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{b64}\n-----END RSA PRIVATE KEY-----\n"
