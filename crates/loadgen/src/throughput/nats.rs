//! The pattern against NATS core: per pair, a subscriber connection on subject
//! `loadgen.<run>.<i>` and a publisher connection sending `PUB`s. A minimal text-protocol client
//! (INFO, CONNECT, SUB, PUB, MSG, PING/PONG).

use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Mutex, Semaphore, watch};

use super::{Clock, RunResult, Samples, ThroughputOptions, finish, run_tag, stopped};
use crate::LoadError;

pub const SYSTEM: &str = "NATS core";
pub const GUARANTEES: &str = "plain TCP, at-most-once, no acknowledgements, memory only";

/// Longest control line accepted.
const MAX_LINE: usize = 64 * 1024;

fn err(detail: impl Into<String>) -> LoadError {
    LoadError::proto("NATS", detail)
}

/// One server line without CRLF.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    line: &mut Vec<u8>,
) -> Result<(), LoadError> {
    line.clear();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', line)
        .await?;
    if n == 0 {
        return Err(err("connection closed"));
    }
    if line.last() != Some(&b'\n') {
        return Err(err("line too long"));
    }
    while matches!(line.last(), Some(b'\n' | b'\r')) {
        line.pop();
    }
    Ok(())
}

/// The payload size of a `MSG <subject> <sid> [reply-to] <#bytes>` line.
pub fn msg_size(line: &[u8]) -> Result<usize, LoadError> {
    let text = std::str::from_utf8(line).map_err(|_| err("non-UTF-8 MSG line"))?;
    let parts: Vec<&str> = text.split_ascii_whitespace().collect();
    if !(4..=5).contains(&parts.len()) || parts[0] != "MSG" {
        return Err(err(format!("bad MSG line: {text}")));
    }
    parts[parts.len() - 1]
        .parse()
        .map_err(|_| err(format!("bad MSG size: {text}")))
}

struct Conn {
    r: BufReader<OwnedReadHalf>,
    w: BufWriter<OwnedWriteHalf>,
}

async fn open(addr: &str) -> Result<Conn, LoadError> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (r, w) = s.into_split();
    let mut c = Conn {
        r: BufReader::with_capacity(64 * 1024, r),
        w: BufWriter::with_capacity(64 * 1024, w),
    };
    let mut line = Vec::new();
    read_line(&mut c.r, &mut line).await?;
    if !line.starts_with(b"INFO ") {
        return Err(err("no INFO"));
    }
    c.w.write_all(
        b"CONNECT {\"verbose\":false,\"pedantic\":false,\"echo\":false,\"name\":\"loadgen\",\"lang\":\"rust\",\"version\":\"0\",\"protocol\":1}\r\n",
    )
    .await?;
    Ok(c)
}

/// Sends PING and waits for PONG (everything before it was processed by the server).
async fn sync(c: &mut Conn) -> Result<(), LoadError> {
    c.w.write_all(b"PING\r\n").await?;
    c.w.flush().await?;
    let mut line = Vec::new();
    loop {
        read_line(&mut c.r, &mut line).await?;
        if line == b"PONG" {
            return Ok(());
        }
        if line.starts_with(b"-ERR") {
            return Err(err(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

pub async fn run(
    addr: &str,
    opts: &ThroughputOptions,
    size: usize,
) -> Result<RunResult, LoadError> {
    let tag = run_tag();
    let mut pairs = Vec::with_capacity(opts.pairs);
    for i in 0..opts.pairs {
        let subject = format!("loadgen.{tag}.{i}");
        let mut sub = open(addr).await?;
        sub.w
            .write_all(format!("SUB {subject} 1\r\n").as_bytes())
            .await?;
        sync(&mut sub).await?;
        let mut publ = open(addr).await?;
        sync(&mut publ).await?;
        pairs.push((subject, sub, publ));
    }
    let clock = Clock::new(opts.warmup, opts.duration);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    for (subject, sub, publ) in pairs {
        let window = Arc::new(Semaphore::new(opts.window.max(1)));
        {
            let (clock, window, mut stop) = (clock.clone(), window.clone(), stop_rx.clone());
            receivers.push(tokio::spawn(async move {
                let Conn { mut r, mut w } = sub;
                let mut samples = Samples::default();
                let mut line = Vec::new();
                let mut payload = Vec::new();
                loop {
                    tokio::select! {
                        _ = stopped(&mut stop) => break,
                        l = read_line(&mut r, &mut line) => l?,
                    }
                    if line.starts_with(b"MSG ") {
                        let n = msg_size(&line)?;
                        payload.resize(n + 2, 0);
                        r.read_exact(&mut payload).await?;
                        samples.record(&clock, &payload[..n])?;
                        window.add_permits(1);
                    } else if line == b"PING" {
                        w.write_all(b"PONG\r\n").await?;
                        w.flush().await?;
                    } else if line.starts_with(b"-ERR") {
                        return Err(err(String::from_utf8_lossy(&line).into_owned()));
                    }
                }
                Ok(samples)
            }));
        }
        let Conn { r, w } = publ;
        let w = Arc::new(Mutex::new(w));
        {
            // The publisher's reader answers server PINGs and fails the run on -ERR (e.g. a
            // slow-consumer disconnect would show up on the subscriber instead).
            let (w, mut stop) = (w.clone(), stop_rx.clone());
            tokio::spawn(async move {
                let mut r = r;
                let mut line = Vec::new();
                loop {
                    let l = tokio::select! {
                        _ = stopped(&mut stop) => break,
                        l = read_line(&mut r, &mut line) => l,
                    };
                    if l.is_err() {
                        break;
                    }
                    if line == b"PING" {
                        let mut w = w.lock().await;
                        if w.write_all(b"PONG\r\n").await.is_err() || w.flush().await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
        let (clock, mut stop) = (clock.clone(), stop_rx.clone());
        let head = format!("PUB {subject} {}\r\n", size.max(super::STAMP_LEN));
        senders.push(tokio::spawn(async move {
            loop {
                let permit = match window.try_acquire() {
                    Ok(p) => p,
                    Err(_) => {
                        w.lock().await.flush().await?;
                        tokio::select! {
                            _ = stopped(&mut stop) => return Ok(()),
                            p = window.acquire() => match p {
                                Ok(p) => p,
                                Err(_) => return Ok(()),
                            },
                        }
                    }
                };
                permit.forget();
                let mut w = w.lock().await;
                if *stop.borrow() {
                    w.flush().await?;
                    return Ok(());
                }
                w.write_all(head.as_bytes()).await?;
                w.write_all(&clock.payload(size)).await?;
                w.write_all(b"\r\n").await?;
            }
        }));
    }
    let (samples, cpu) = finish(&clock, opts.nats_pid, stop_tx, receivers, senders).await?;
    Ok(RunResult::from_samples(
        SYSTEM,
        GUARANTEES.to_string(),
        size,
        &clock,
        samples,
        cpu,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_line_sizes() {
        assert_eq!(msg_size(b"MSG a.b 1 256").unwrap(), 256);
        assert_eq!(msg_size(b"MSG a.b 1 _INBOX.x 4096").unwrap(), 4096);
        assert!(msg_size(b"MSG a.b").is_err());
        assert!(msg_size(b"MSG a.b 1 x").is_err());
    }
}
