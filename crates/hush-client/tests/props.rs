//! Properties: decoders never panic on garbage, plaintext codecs round-trip, backoff stays in
//! its bounds, and the correlator agrees with a simple model under random operations.

use std::collections::HashMap;
use std::time::Duration;

use hush_client::core::{Correlator, Incoming, Resolution, SessionParams, decode_incoming};
use hush_client::msg::{NMsgMeta, parse_nmsg_meta, parse_rcv_msg_body};
use hush_client::{Backoff, BackoffConfig, RawMsg, RcvMsgBody, ServerEvent};
use hush_crypto::DhSecret;
use hush_proto::Encode;
use hush_proto::error::ErrorType;
use hush_proto::smp::{BrokerMsg, MsgFlags};
use proptest::prelude::*;

fn session(version: u16) -> SessionParams {
    SessionParams {
        version,
        session_id: vec![3; 32],
        server_session_key: None,
        block_size: 16384,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any bytes as a relay transmission, at any version: a response or an event, no panic.
    #[test]
    fn decode_incoming_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300), v in 6u16..=18) {
        let _ = decode_incoming(&bytes, &session(v));
    }

    /// Garbage (and truncated valid) MSG plaintexts and NMSG metadata never panic.
    #[test]
    fn plaintext_parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64), cut in 0usize..40) {
        let _ = parse_rcv_msg_body(&bytes);
        let _ = parse_nmsg_meta(&bytes);
        let valid = RcvMsgBody::Message { ts: 1, flags: MsgFlags { notification: true }, body: b"abc".to_vec() }.encode();
        let _ = parse_rcv_msg_body(&valid[..cut.min(valid.len())]);
        let _ = parse_rcv_msg_body(&[b"QUOTA ".as_slice(), &bytes].concat());
    }

    /// Garbage encrypted bodies fail to decrypt without panicking.
    #[test]
    fn decrypt_garbage(body in proptest::collection::vec(any::<u8>(), 0..200), id in proptest::collection::vec(any::<u8>(), 0..30)) {
        let m = RawMsg { msg_id: id, enc_body: body };
        prop_assert!(m.decrypt(&DhSecret::from_bytes([1; 32])).is_err());
    }

    /// MSG plaintexts round-trip (reserved flag bytes before the space are skipped).
    #[test]
    fn rcv_msg_body_round_trip(ts in any::<i64>(), n in any::<bool>(), body in proptest::collection::vec(any::<u8>(), 0..100), quota in any::<bool>()) {
        let b = if quota { RcvMsgBody::Quota { ts } } else {
            RcvMsgBody::Message { ts, flags: MsgFlags { notification: n }, body: body.clone() }
        };
        prop_assert_eq!(parse_rcv_msg_body(&b.encode()).unwrap(), b.clone());
        if !quota && ts.to_be_bytes()[..6] != *b"QUOTA " {
            let mut extended = Vec::new();
            ts.encode(&mut extended);
            extended.push(if n { b'T' } else { b'F' });
            extended.extend_from_slice(b"xyz ");
            extended.extend_from_slice(&body);
            prop_assert_eq!(parse_rcv_msg_body(&extended).unwrap(), b);
        }
    }

    /// NMsgMeta round-trips (trailing bytes ignored).
    #[test]
    fn nmsg_meta_round_trip(id in proptest::collection::vec(any::<u8>(), 0..=255), ts in any::<i64>(), extra in proptest::collection::vec(any::<u8>(), 0..8)) {
        let mut b = vec![id.len() as u8];
        b.extend_from_slice(&id);
        ts.encode(&mut b);
        b.extend_from_slice(&extra);
        prop_assert_eq!(parse_nmsg_meta(&b).unwrap(), NMsgMeta { msg_id: id, ts });
    }

    /// Backoff delays: base doubles up to the cap; jitter only shortens, by at most `jitter`.
    #[test]
    fn backoff_bounds(initial_ms in 1u64..5000, max_ms in 1u64..120_000, jitter in 0.0f64..=1.0, units in proptest::collection::vec(0.0f64..1.0, 1..30)) {
        let cfg = BackoffConfig {
            initial: Duration::from_millis(initial_ms),
            max: Duration::from_millis(max_ms),
            multiplier: 2.0,
            jitter,
        };
        let mut b = Backoff::new(cfg.clone());
        let mut prev_base = Duration::ZERO;
        for (i, u) in units.iter().enumerate() {
            let base = b.base_delay();
            prop_assert!(base >= prev_base);
            prop_assert!(base <= cfg.max);
            let expect = Duration::from_millis(initial_ms).mul_f64(2f64.powi(i as i32)).min(cfg.max);
            prop_assert!(base.abs_diff(expect) <= Duration::from_micros(1));
            let d = b.next_delay_with(*u);
            prop_assert!(d <= base);
            prop_assert!(d >= base.mul_f64(1.0 - jitter) - Duration::from_micros(1));
            prev_base = base;
        }
        b.reset();
        prop_assert_eq!(b.base_delay(), cfg.initial.min(cfg.max));
        prop_assert_eq!(b.attempts(), 0);
    }

    /// Random register / time-out / respond / remove sequences: the correlator delivers each
    /// response to its waiter exactly once, reports late and unknown responses as events,
    /// and drains exactly the still-waiting commands.
    #[test]
    fn correlator_model(ops in proptest::collection::vec((0u8..4, 0u8..12), 1..200)) {
        #[derive(Clone, Copy, PartialEq, Debug)]
        enum St { Waiting, TimedOut }
        let mut c: Correlator<u8> = Correlator::new();
        let mut model: HashMap<u8, St> = HashMap::new();
        for (op, k) in ops {
            let corr = vec![k; 24];
            match op {
                0 => { c.register(corr, vec![k], "DEL", k); model.insert(k, St::Waiting); }
                1 => {
                    c.time_out(&corr);
                    if let Some(s) = model.get_mut(&k) { *s = St::TimedOut; }
                }
                2 => {
                    let r = c.resolve(&corr, vec![k], Ok(BrokerMsg::Ok));
                    match (model.remove(&k), r) {
                        (Some(St::Waiting), Resolution::Deliver(w, Ok(BrokerMsg::Ok))) => prop_assert_eq!(w, k),
                        (Some(St::TimedOut), Resolution::Late(ServerEvent::LateResponse { entity_id, command: "DEL", .. })) => prop_assert_eq!(entity_id, vec![k]),
                        (None, Resolution::Unknown(ServerEvent::Unexpected { tag: "OK", .. })) => {}
                        (m, r) => prop_assert!(false, "model {:?}, got {:?}", m, r),
                    }
                }
                _ => {
                    let w = c.remove(&corr);
                    match model.remove(&k) {
                        Some(St::Waiting) => prop_assert_eq!(w, Some(k)),
                        _ => prop_assert_eq!(w, None),
                    }
                }
            }
            prop_assert_eq!(c.waiting(), model.values().filter(|s| **s == St::Waiting).count());
        }
        let mut drained = c.drain();
        drained.sort();
        let mut expect: Vec<u8> = model.iter().filter(|(_, s)| **s == St::Waiting).map(|(k, _)| *k).collect();
        expect.sort();
        prop_assert_eq!(drained, expect);
        prop_assert!(c.is_empty());
    }
}

/// A response whose entity differs from the command's is an error for the waiter; an `ERR`
/// with an empty entity (BLOCK) is still that command's error.
#[test]
fn correlator_entity_rules() {
    let mut c: Correlator<u8> = Correlator::new();
    c.register(vec![1; 24], b"q".to_vec(), "SUB", 1);
    match c.resolve(&[1; 24], b"other".to_vec(), Ok(BrokerMsg::Sok(None))) {
        Resolution::Deliver(
            1,
            Err(hush_client::ClientError::UnexpectedResponse {
                command: "SUB",
                tag: "SOK",
            }),
        ) => {}
        r => panic!("{r:?}"),
    }
    c.register(vec![2; 24], b"q".to_vec(), "SUB", 2);
    match c.resolve(&[2; 24], vec![], Ok(BrokerMsg::Err(ErrorType::Block))) {
        Resolution::Deliver(2, Err(hush_client::ClientError::Smp(ErrorType::Block))) => {}
        r => panic!("{r:?}"),
    }
    // Late MSG for a timed-out ACK is a message event.
    c.register(vec![3; 24], b"q".to_vec(), "ACK", 3);
    c.time_out(&[3; 24]);
    let msg = BrokerMsg::Msg {
        msg_id: hush_proto::encoding::ShortString::new(vec![9; 24]).unwrap(),
        body: vec![1, 2, 3],
    };
    match c.resolve(&[3; 24], b"q".to_vec(), Ok(msg)) {
        Resolution::Late(ServerEvent::Message { rcv_id, msg }) => {
            assert_eq!(rcv_id, b"q");
            assert_eq!(msg.msg_id, vec![9; 24]);
        }
        r => panic!("{r:?}"),
    }
    assert!(c.is_empty());
    // An event transmission never goes through the correlator.
    let t = [0u8, 0, 1, b'q', b'E', b'N', b'D'];
    assert!(matches!(
        decode_incoming(&t, &session(18)),
        Incoming::Event(ServerEvent::End { .. })
    ));
}
