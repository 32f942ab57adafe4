#!/usr/bin/env python3
"""Known-answer vectors for hush-agent's double ratchet (reference protocols.md §6.4).

Independent construction with python `cryptography` (OpenSSL X448, HKDF-SHA512, AES-256-GCM with a
16-byte IV) following the reference `Crypto/Ratchet.hs` description, NOT the Rust code. Run:

    python3 gen_ratchet_kat.py > ratchet_kat.json

All private keys are fixed byte patterns so the output is deterministic.
"""
import json
import struct

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x448 import X448PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat


def priv(start):
    return bytes((start + i) % 256 for i in range(56))


def key(raw):
    return X448PrivateKey.from_private_bytes(raw)


def pub_raw(k):
    return k.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def pub_spki(k):
    return k.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


def dh(k, pub_k):
    return k.exchange(pub_k.public_key())


def hkdf(salt, ikm, info, n):
    return HKDF(algorithm=hashes.SHA512(), length=n, salt=salt, info=info).derive(ikm)


def hkdf3(salt, ikm, info):
    out = hkdf(salt, ikm, info, 96)
    return out[:32], out[32:64], out[64:]


def root_kdf(rk, dh_out):
    return hkdf3(rk, dh_out, b"SimpleXRootRatchet")


def chain_kdf(ck):
    ck2, mk, ivs = hkdf3(b"", ck, b"SimpleXChainRatchet")
    return ck2, mk, ivs[:16], ivs[16:]


def pad(msg, n):
    assert len(msg) + 2 <= n
    return struct.pack(">H", len(msg)) + msg + b"#" * (n - len(msg) - 2)


def short(b):
    assert len(b) < 256
    return bytes([len(b)]) + b


def large(b):
    return struct.pack(">H", len(b)) + b


def aead(k, iv, padded_len, ad, msg):
    ct = AESGCM(k).encrypt(iv, pad(msg, padded_len), ad)
    return ct[-16:], ct[:-16]  # (tag, ciphertext)


HEADER_LEN = 88  # PQ support off


def header_plain(v_current, max_v, dhrs_spki, pn, ns):
    h = struct.pack(">H", max_v) + short(dhrs_spki)
    if v_current >= 3:
        h += b"0"  # Maybe KEM: Nothing
    return h + struct.pack(">II", pn, ns)


class Side:
    pass


def encrypt(st, msg, padded_len):
    ck2, mk, iv, hiv = chain_kdf(st.cks)
    hdr = header_plain(st.v, 3, pub_spki(st.dhrs), st.pn, st.ns)
    htag, hbody = aead(st.hks, hiv, HEADER_LEN, st.ad, hdr)
    v = st.v
    enc_hdr = struct.pack(">H", v) + hiv + htag + (large(hbody) if v >= 3 else short(hbody))
    tag, body = aead(mk, iv, padded_len, st.ad + enc_hdr, msg)
    out = (large(enc_hdr) if v >= 3 else short(enc_hdr)) + tag + body
    st.cks = ck2
    st.ns += 1
    return out, {"header_plain_hex": hdr.hex(), "enc_header_hex": enc_hdr.hex(), "mk_hex": mk.hex(),
                 "msg_iv_hex": iv.hex(), "header_iv_hex": hiv.hex()}


def receive_step(st, peer_dhrs_pub_raw_key, new_dhrs):
    """DH ratchet step on the receiving side (header decrypted with NHKr)."""
    rk1, ckr, nhkr = root_kdf(st.rk, dh(st.dhrs, peer_dhrs_pub_raw_key))
    rk2, cks, nhks = root_kdf(rk1, dh(new_dhrs, peer_dhrs_pub_raw_key))
    st.hkr = st.nhkr
    st.hks = st.nhks
    st.ckr, st.nhkr = ckr, nhkr
    st.cks, st.nhks = cks, nhks
    st.rk = rk2
    st.dhrs = new_dhrs
    st.pn, st.ns, st.nr = st.ns, 0, 0


def main():
    r1, r2 = key(priv(1)), key(priv(101))  # inviter's link keys
    s1, s2 = key(priv(201)), key(priv(51))  # joiner's confirmation keys
    j_dhrs0 = key(priv(151))  # joiner's first ratchet key
    i_dhrs1 = key(priv(11))  # inviter's key made at its first ratchet step
    j_dhrs1 = key(priv(21))  # joiner's key made at its first ratchet step

    # X3DH (joiner's view): dh1 = DH(R1,S2), dh2 = DH(R2,S1), dh3 = DH(R2,S2)
    dh1, dh2, dh3 = dh(s2, r1), dh(s1, r2), dh(s2, r2)
    assert dh1 == dh(r1, s2) and dh2 == dh(r2, s1) and dh3 == dh(r2, s2)
    hk, nhk, sk = hkdf3(bytes(64), dh1 + dh2 + dh3, b"SimpleXX3DH")
    ad = pub_raw(s1) + pub_raw(r1)

    v = 3
    # joiner: initSndRatchet (DHRr = R2, DHRs = fresh)
    j = Side()
    j.v, j.ad, j.dhrs = v, ad, j_dhrs0
    j.rk, j.cks, j.nhks = root_kdf(sk, dh(j_dhrs0, r2))
    j.hks, j.nhkr = hk, nhk
    j.ns = j.nr = j.pn = 0
    j_init = {"rk_hex": j.rk.hex(), "cks_hex": j.cks.hex(), "nhks_hex": j.nhks.hex()}

    msgs = []
    m1, d1 = encrypt(j, b"hello from joiner", 15840)
    msgs.append(dict(d1, sender="joiner", plain_ascii="hello from joiner", padded_len=15840,
                     full_hex=m1.hex()))
    m2, d2 = encrypt(j, b"second", 100)
    msgs.append(dict(d2, sender="joiner", plain_ascii="second", padded_len=100, full_hex=m2.hex()))

    # inviter: initRcvRatchet (DHRs = R2, RK = SK), receives m1: ratchet step with new key i_dhrs1
    i = Side()
    i.v, i.ad, i.dhrs, i.rk = v, ad, r2, sk
    i.nhks, i.nhkr = nhk, hk
    i.ns = i.nr = i.pn = 0
    receive_step(i, j_dhrs0, i_dhrs1)
    assert i.ckr == j_init["cks_hex"] or bytes.fromhex(j_init["cks_hex"]) == i.ckr
    i.nr = 2  # consumed m1 and m2 (chain key advance is not needed for sending)
    m3, d3 = encrypt(i, b"reply from inviter", 100)
    msgs.append(dict(d3, sender="inviter", plain_ascii="reply from inviter", padded_len=100, full_hex=m3.hex()))

    # joiner receives m3: ratchet step with new key j_dhrs1, then replies
    receive_step(j, i_dhrs1, j_dhrs1)
    m4, d4 = encrypt(j, b"after step", 100)
    msgs.append(dict(d4, sender="joiner", plain_ascii="after step", padded_len=100, full_hex=m4.hex()))

    # the same joiner start at e2e version 2: no KEM slot, 1-byte length framing
    j2 = Side()
    j2.v, j2.ad, j2.dhrs = 2, ad, j_dhrs0
    j2.rk, j2.cks, j2.nhks = root_kdf(sk, dh(j_dhrs0, r2))
    j2.hks, j2.nhkr = hk, nhk
    j2.ns = j2.nr = j2.pn = 0
    m5, d5 = encrypt(j2, b"v2 message", 100)
    msgs_v2 = [dict(d5, sender="joiner", plain_ascii="v2 message", padded_len=100, full_hex=m5.hex())]

    # standalone KDF steps
    rk_in, dh_in = bytes(range(32)), bytes(range(100, 156))
    rk_o, ck_o, nhk_o = root_kdf(rk_in, dh_in)
    ck_in = bytes(range(32, 64))
    ck_o2, mk_o, iv1, iv2 = chain_kdf(ck_in)
    # AES-GCM with a 16-byte IV on its own
    g_tag, g_ct = aead(bytes(range(32)), bytes(range(16)), 32, b"associated", b"plaintext")

    out = {
        "source": "generated with python cryptography (OpenSSL) from protocols.md 6.4; see gen_ratchet_kat.py",
        "keys": {
            "r1_priv_hex": priv(1).hex(), "r2_priv_hex": priv(101).hex(),
            "s1_priv_hex": priv(201).hex(), "s2_priv_hex": priv(51).hex(),
            "joiner_dhrs0_priv_hex": priv(151).hex(), "inviter_dhrs1_priv_hex": priv(11).hex(),
            "joiner_dhrs1_priv_hex": priv(21).hex(),
            "r1_spki_hex": pub_spki(r1).hex(), "r2_spki_hex": pub_spki(r2).hex(),
            "s1_spki_hex": pub_spki(s1).hex(), "s2_spki_hex": pub_spki(s2).hex(),
        },
        "x3dh": {"dh1_hex": dh1.hex(), "dh2_hex": dh2.hex(), "dh3_hex": dh3.hex(),
                 "hk_hex": hk.hex(), "nhk_hex": nhk.hex(), "sk_hex": sk.hex(), "ad_hex": ad.hex()},
        "joiner_init": j_init,
        "root_kdf": {"rk_hex": rk_in.hex(), "dh_hex": dh_in.hex(), "rk_out_hex": rk_o.hex(),
                     "ck_out_hex": ck_o.hex(), "nhk_out_hex": nhk_o.hex()},
        "chain_kdf": {"ck_hex": ck_in.hex(), "ck_out_hex": ck_o2.hex(), "mk_hex": mk_o.hex(),
                      "msg_iv_hex": iv1.hex(), "header_iv_hex": iv2.hex()},
        "aes_gcm_16": {"key_hex": bytes(range(32)).hex(), "iv_hex": bytes(range(16)).hex(),
                       "ad_ascii": "associated", "plain_ascii": "plaintext", "padded_len": 32,
                       "tag_hex": g_tag.hex(), "ct_hex": g_ct.hex()},
        "e2e_version": v,
        "messages": msgs,
        "messages_v2": msgs_v2,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
