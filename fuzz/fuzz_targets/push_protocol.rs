//! cargo-fuzz target `push_protocol` (build with `--features push`): see `bodies/push.rs` for
//! the input format and the checks.
#![no_main]

#[path = "bodies/push.rs"]
#[allow(dead_code)]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bodies::push_protocol(data);
});
