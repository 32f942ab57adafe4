//! cargo-fuzz target `block`: see `bodies/block.rs` for what is checked.
#![no_main]

#[path = "bodies/block.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bodies::block(data);
});
