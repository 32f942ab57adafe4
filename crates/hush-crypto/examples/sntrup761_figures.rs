//! Prints the cost of the sntrup761 KEM operations (key pair, encapsulation, decapsulation):
//! `cargo run -p hush-crypto --example sntrup761_figures [iterations]` (dependencies are built
//! with opt-level 2 even in the dev profile; use `--release` for release figures). A PQ ratchet
//! step costs one key pair, one encapsulation and one decapsulation on each side.

use std::time::Instant;

use hush_crypto::sntrup761;

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(50);
    let t = Instant::now();
    let pairs: Vec<_> = (0..n).map(|_| sntrup761::keypair()).collect();
    let keygen = t.elapsed() / n;
    let t = Instant::now();
    let cts: Vec<_> = pairs
        .iter()
        .map(|k| sntrup761::encapsulate(&k.public))
        .collect();
    let encap = t.elapsed() / n;
    let t = Instant::now();
    let mut ok = 0;
    for (k, (ct, ss)) in pairs.iter().zip(&cts) {
        if sntrup761::decapsulate(ct, &k.secret) == *ss {
            ok += 1;
        }
    }
    let decap = t.elapsed() / n;
    assert_eq!(ok, n);
    println!("sntrup761, {n} iterations, per operation:");
    println!("  key pair       {keygen:?}");
    println!("  encapsulate    {encap:?}");
    println!("  decapsulate    {decap:?}");
}
