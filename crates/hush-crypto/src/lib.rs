//! hush-crypto: keys and their DER encodings, signatures, DH, crypto_box, the SimpleX secretbox,
//! the block-encryption chain, command authenticators and server certificates (reference §1.1, §2.6, §2.7, §4).
