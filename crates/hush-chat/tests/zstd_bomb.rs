//! A zstd bomb inside a compressed batch: a small body that would expand to 256 MiB must give
//! `DecompressedTooLarge` at the 64 KiB cap, without the process's peak memory growing by more
//! than the cap's order of magnitude. One test in its own binary, so the peak-RSS reading
//! (`VmHWM` in /proc/self/status) is not disturbed by other tests.

use std::io::Write;
use std::time::Instant;

use hush_chat::{ChatError, parse_chat_messages};

fn vm_hwm_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = s.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn x_body(frame: &[u8]) -> Vec<u8> {
    let len = u16::try_from(frame.len()).expect("bomb frame fits a Large");
    let mut b = vec![b'X', 1, b'1'];
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(frame);
    b
}

#[test]
fn zstd_bombs_stop_at_the_cap() {
    // 1) a streamed frame with no declared size: 256 MiB of '{' expands until the 64 KiB
    //    output buffer is full
    let chunk = vec![b'{'; 1 << 20];
    let mut enc = zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
    for _ in 0..256 {
        enc.write_all(&chunk).unwrap();
    }
    let streamed = x_body(&enc.finish().unwrap());
    // 2) a frame that declares its 8 MiB size up front: refused before decoding
    let declared = x_body(&zstd::bulk::compress(&vec![b'{'; 8 << 20], 19).unwrap());
    drop(chunk);

    let before = vm_hwm_kib();
    let t = Instant::now();
    let r1 = parse_chat_messages(&streamed);
    let t1 = t.elapsed();
    let t = Instant::now();
    let r2 = parse_chat_messages(&declared);
    let t2 = t.elapsed();
    let after = vm_hwm_kib();

    assert_eq!(
        r1,
        vec![Err(ChatError::DecompressedTooLarge { limit: 65536 })]
    );
    assert_eq!(
        r2,
        vec![Err(ChatError::DecompressedTooLarge { limit: 65536 })]
    );
    println!(
        "bomb bodies: streamed {} B (256 MiB inside) refused in {:?}; declared-size {} B (8 MiB inside) refused in {:?}; peak RSS {} -> {} KiB",
        streamed.len(),
        t1,
        declared.len(),
        t2,
        before,
        after
    );
    assert!(
        after <= before + 2048,
        "peak RSS grew from {before} to {after} KiB decoding bombs"
    );
}
