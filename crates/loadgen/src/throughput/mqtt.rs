//! The pattern against an MQTT 3.1.1 broker (Mosquitto): per pair, a subscriber connection on
//! topic `loadgen/<run>/<i>` with QoS 1 (it sends PUBACK for every PUBLISH) and a publisher
//! connection sending QoS 1 PUBLISHes (the broker answers PUBACK). A minimal client: CONNECT,
//! SUBSCRIBE, PUBLISH, PUBACK — nothing else is needed for this pattern.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};

use super::{Clock, RunResult, Samples, ThroughputOptions, finish, run_tag, stopped};
use crate::LoadError;

pub const SYSTEM: &str = "Mosquitto (MQTT)";
pub const GUARANTEES: &str = "plain TCP, QoS 1 (PUBACK on both legs), persistence only at autosave/shutdown (no per-message fsync)";

const CONNECT: u8 = 0x10;
const CONNACK: u8 = 0x20;
const PUBLISH: u8 = 0x30;
const PUBACK: u8 = 0x40;
const SUBSCRIBE: u8 = 0x82;
const SUBACK: u8 = 0x90;

fn err(detail: impl Into<String>) -> LoadError {
    LoadError::proto("MQTT", detail)
}

/// Appends the "remaining length" variable-length integer.
pub fn put_len(out: &mut Vec<u8>, mut n: usize) {
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            break;
        }
    }
}

fn put_str(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s);
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(body.len() + 5);
    p.push(first);
    put_len(&mut p, body.len());
    p.extend_from_slice(body);
    p
}

pub fn connect_packet(client_id: &str) -> Vec<u8> {
    let mut b = Vec::new();
    put_str(&mut b, b"MQTT");
    b.push(4); // protocol level 3.1.1
    b.push(0x02); // clean session
    b.extend_from_slice(&0u16.to_be_bytes()); // keep alive off
    put_str(&mut b, client_id.as_bytes());
    packet(CONNECT, &b)
}

pub fn subscribe_packet(pid: u16, topic: &str) -> Vec<u8> {
    let mut b = pid.to_be_bytes().to_vec();
    put_str(&mut b, topic.as_bytes());
    b.push(1); // QoS 1
    packet(SUBSCRIBE, &b)
}

pub fn publish_packet(pid: u16, topic: &str, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(topic.len() + payload.len() + 4);
    put_str(&mut b, topic.as_bytes());
    b.extend_from_slice(&pid.to_be_bytes());
    b.extend_from_slice(payload);
    packet(PUBLISH | 0x02, &b) // QoS 1
}

fn puback_packet(pid: [u8; 2]) -> [u8; 4] {
    [PUBACK, 2, pid[0], pid[1]]
}

/// Reads one packet: (first byte, body).
pub async fn read_packet<R: AsyncRead + Unpin>(r: &mut R) -> Result<(u8, Vec<u8>), LoadError> {
    let first = r.read_u8().await?;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = r.read_u8().await?;
        len |= ((b & 0x7f) as usize) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 21 {
            return Err(err("remaining length over 4 bytes"));
        }
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    Ok((first, body))
}

/// Splits a PUBLISH body into (packet id if QoS > 0, payload).
pub fn parse_publish(first: u8, body: &[u8]) -> Result<(Option<[u8; 2]>, &[u8]), LoadError> {
    let qos = (first >> 1) & 3;
    let tlen = body
        .get(..2)
        .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
        .ok_or_else(|| err("short PUBLISH"))?;
    let mut at = 2 + tlen;
    let pid = if qos > 0 {
        let p = body.get(at..at + 2).ok_or_else(|| err("short PUBLISH"))?;
        at += 2;
        Some([p[0], p[1]])
    } else {
        None
    };
    let payload = body.get(at..).ok_or_else(|| err("short PUBLISH"))?;
    Ok((pid, payload))
}

async fn open(addr: &str, client_id: &str) -> Result<TcpStream, LoadError> {
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(&connect_packet(client_id)).await?;
    let (first, body) = read_packet(&mut s).await?;
    if first != CONNACK || body.get(1) != Some(&0) {
        return Err(err(format!("CONNACK refused: {first:#x} {body:?}")));
    }
    Ok(s)
}

pub async fn run(
    addr: &str,
    opts: &ThroughputOptions,
    size: usize,
) -> Result<RunResult, LoadError> {
    let tag = run_tag();
    let mut pairs = Vec::with_capacity(opts.pairs);
    for i in 0..opts.pairs {
        let topic = format!("loadgen/{tag}/{i}");
        let mut sub = open(addr, &format!("lg-s-{tag}-{i}")).await?;
        sub.write_all(&subscribe_packet(1, &topic)).await?;
        let (first, body) = read_packet(&mut sub).await?;
        if first != SUBACK || body.get(2) != Some(&1) {
            return Err(err(format!("SUBACK: {first:#x} {body:?}")));
        }
        let publ = open(addr, &format!("lg-p-{tag}-{i}")).await?;
        pairs.push((topic, sub, publ));
    }
    let clock = Clock::new(opts.warmup, opts.duration);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut receivers = Vec::new();
    let mut senders = Vec::new();
    let mut puback_counters = Vec::new();
    for (topic, sub, publ) in pairs {
        let window = Arc::new(Semaphore::new(opts.window.max(1)));
        {
            let (clock, window, mut stop) = (clock.clone(), window.clone(), stop_rx.clone());
            receivers.push(tokio::spawn(async move {
                let (r, w) = sub.into_split();
                let mut r = BufReader::new(r);
                let mut w = BufWriter::new(w);
                let mut samples = Samples::default();
                loop {
                    let pkt = tokio::select! {
                        _ = stopped(&mut stop) => break,
                        p = read_packet(&mut r) => p?,
                    };
                    let (first, body) = pkt;
                    if first & 0xf0 != PUBLISH {
                        continue;
                    }
                    let (pid, payload) = parse_publish(first, &body)?;
                    samples.record(&clock, payload)?;
                    window.add_permits(1);
                    if let Some(pid) = pid {
                        w.write_all(&puback_packet(pid)).await?;
                    }
                    if r.buffer().is_empty() {
                        w.flush().await?;
                    }
                }
                Ok(samples)
            }));
        }
        let (r, w) = publ.into_split();
        let acks = Arc::new(AtomicU64::new(0));
        puback_counters.push(acks.clone());
        let mut ack_stop = stop_rx.clone();
        // PUBACK reader of the publisher connection (counted, to check the broker accepted all).
        tokio::spawn(async move {
            let mut r = BufReader::new(r);
            loop {
                let p = tokio::select! {
                    _ = stopped(&mut ack_stop) => break,
                    p = read_packet(&mut r) => p,
                };
                match p {
                    Ok((first, _)) if first & 0xf0 == PUBACK => {
                        acks.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        });
        let (clock, mut stop) = (clock.clone(), stop_rx.clone());
        senders.push(tokio::spawn(async move {
            let mut w = BufWriter::new(w);
            let mut pid: u16 = 0;
            loop {
                let permit = match window.try_acquire() {
                    Ok(p) => p,
                    Err(_) => {
                        w.flush().await?;
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
                if *stop.borrow() {
                    w.flush().await?;
                    return Ok(());
                }
                pid = pid.checked_add(1).unwrap_or(1);
                w.write_all(&publish_packet(pid, &topic, &clock.payload(size)))
                    .await?;
            }
        }));
    }
    let (samples, cpu) = finish(&clock, opts.mqtt_pid, stop_tx, receivers, senders).await?;
    let r = RunResult::from_samples(SYSTEM, GUARANTEES.to_string(), size, &clock, samples, cpu);
    let acked: u64 = puback_counters
        .iter()
        .map(|a| a.load(Ordering::Relaxed))
        .sum();
    if r.messages > 0 && acked == 0 {
        return Err(err("no PUBACK from the broker"));
    }
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_and_parses_packets() {
        let mut v = Vec::new();
        put_len(&mut v, 321);
        assert_eq!(v, [0xc1, 0x02]);
        let p = publish_packet(7, "t/1", b"hello");
        assert_eq!(p[0], 0x32);
        assert_eq!(p[1] as usize, p.len() - 2);
        let (pid, payload) = parse_publish(p[0], &p[2..]).unwrap();
        assert_eq!((pid, payload), (Some([0, 7]), &b"hello"[..]));
        assert!(parse_publish(0x32, &[0, 9, b'x']).is_err());
        let c = connect_packet("id");
        assert_eq!(&c[..10], &[0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2]);
    }
}
