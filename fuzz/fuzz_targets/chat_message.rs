//! cargo-fuzz target `chat_message`: see `bodies/chat.rs` for the input and the checks.
#![no_main]

#[path = "bodies/chat.rs"]
mod bodies;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = bodies::chat_message(data);
});
