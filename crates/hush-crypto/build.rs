//! `hush_ossl3` when the OpenSSL that openssl-sys links is 3.x: Poly1305 over long inputs then
//! uses OpenSSL's `EVP_MAC` (src/poly.rs); with OpenSSL 1.1 the `poly1305` crate does it all.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(hush_ossl3)");
    println!("cargo::rerun-if-env-changed=DEP_OPENSSL_VERSION_NUMBER");
    if let Ok(v) = std::env::var("DEP_OPENSSL_VERSION_NUMBER")
        && let Ok(n) = u64::from_str_radix(&v, 16)
        && n >= 0x3000_0000
    {
        println!("cargo::rustc-cfg=hush_ossl3");
    }
}
