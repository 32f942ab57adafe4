//! CPU time per chat-layer operation, from this thread's CPU clock
//! (`/proc/thread-self/schedstat`, nanoseconds on CPU), so load from other processes on the
//! machine inflates the figures less than wall time would.
//!
//! `cargo run --release -p hush-chat --example decode_cost`

use std::hint::black_box;
use std::io::Write;

use hush_chat::{
    ChatMessage, MAX_ENCODED_MSG_LENGTH, Profile, batch_messages, compress_body,
    parse_chat_messages,
};

fn cpu_ns() -> u64 {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    s.split_whitespace().next().unwrap().parse().unwrap()
}

fn measure(name: &str, bytes: usize, iters: u32, mut f: impl FnMut()) {
    for _ in 0..iters / 10 {
        f();
    }
    let t0 = cpu_ns();
    for _ in 0..iters {
        f();
    }
    let per = (cpu_ns() - t0) as f64 / iters as f64;
    println!("{name:<48} {bytes:>6} B  {:>9.2} us/op", per / 1000.0);
}

fn main() {
    let text = ChatMessage::text("hello, this is a short chat message").encode();
    let profile = Profile {
        full_name: "Alice Example".into(),
        image: Some(format!("data:image/jpg;base64,{}", "QUJD".repeat(300))),
        ..Profile::named("alice")
    };
    let info = ChatMessage::info(profile).encode();
    let msgs: Vec<Vec<u8>> = (0..120)
        .map(|i| ChatMessage::text(format!("batched message number {i}, some words")).encode())
        .collect();
    let batch = batch_messages(&msgs, MAX_ENCODED_MSG_LENGTH)
        .remove(0)
        .unwrap();
    let n_batch = parse_chat_messages(&batch).len();
    let compressed = compress_body(&batch).unwrap();
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    let chunk = vec![b'{'; 1 << 20];
    for _ in 0..64 {
        enc.write_all(&chunk).unwrap();
    }
    let frame = enc.finish().unwrap();
    let mut bomb = vec![b'X', 1, b'1'];
    bomb.extend_from_slice(&(frame.len() as u16).to_be_bytes());
    bomb.extend_from_slice(&frame);

    println!(
        "batch: {n_batch} messages, {} B JSON -> {} B compressed",
        batch.len(),
        compressed.len()
    );
    measure("encode x.msg.new text", text.len(), 200_000, || {
        black_box(ChatMessage::text(black_box("hello, this is a short chat message")).encode());
    });
    measure("decode x.msg.new text", text.len(), 200_000, || {
        black_box(parse_chat_messages(black_box(&text)));
    });
    measure(
        "decode x.info (profile with image)",
        info.len(),
        100_000,
        || {
            black_box(parse_chat_messages(black_box(&info)));
        },
    );
    measure("decode JSON batch (whole body)", batch.len(), 2_000, || {
        black_box(parse_chat_messages(black_box(&batch)));
    });
    measure(
        "decode X compressed batch (whole body)",
        compressed.len(),
        2_000,
        || {
            black_box(parse_chat_messages(black_box(&compressed)));
        },
    );
    measure("compress_body (zstd level 3)", batch.len(), 2_000, || {
        black_box(compress_body(black_box(&batch)).unwrap());
    });
    measure(
        "refuse zstd bomb (64 MiB inside, no size)",
        bomb.len(),
        5_000,
        || {
            black_box(parse_chat_messages(black_box(&bomb)));
        },
    );
}
