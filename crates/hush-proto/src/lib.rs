//! hush-proto: the sans-IO core of SMP v18 and NTF v3 (reference `protocols.md` §1–§3, §5).
//!
//! No sockets, no clocks, no crypto: bytes in, typed values out, and back. Everything that
//! authenticates or encrypts lives in `hush-crypto`; everything that touches a socket lives in
//! `hush-transport`.

pub mod address;
pub mod encoding;
pub mod error;
pub mod handshake;
pub mod ntf;
pub mod smp;
pub mod strtext;
pub mod transmission;
pub mod version;

pub use encoding::{Decode, DecodeError, Encode, EncodeError, Parser};
