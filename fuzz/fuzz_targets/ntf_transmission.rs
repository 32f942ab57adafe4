//! cargo-fuzz target `ntf_transmission`: see `bodies/ntf.rs` for the input format and the checks.
#![no_main]

#[path = "bodies/ntf.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bodies::ntf_transmission(data);
});
