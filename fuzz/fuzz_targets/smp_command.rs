//! cargo-fuzz target `smp_command`: see `bodies/proto.rs` for the input format and the checks.
#![no_main]

#[path = "bodies/proto.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bodies::smp_command(data);
});
