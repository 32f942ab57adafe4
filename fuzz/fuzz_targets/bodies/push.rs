//! Fuzz target body for the push-server network protocol (`crates/push-api/src/remote.rs`, served
//! by `crates/push-server/src/net.rs`): the JSON lines an ntf-server (or a device registering a
//! handle) and a remote push-server exchange.
//!
//! Shared by the cargo-fuzz target `push_protocol` and the corpus replay
//! `crates/push-api/tests/fuzz_corpus.rs` (included with `#[path]`). The first byte
//! selects the direction, the rest is one received line (up to and including the first `\n`,
//! at most `MAX_LINE` bytes, as the readers take it). Never panics on bad input; returns
//! whether the decoder accepted the line and asserts round trips when it did.

use push_api::remote::{
    Envelope, MAX_LINE, Request, decode_request, decode_response, encode_request, encode_response,
};
use push_api::{FeedbackEvent, GatewayError, HandleKey, PushHandle, Sealed, SubmitOutcome};
use serde_json::Value;

/// The request id the client waits for in the reply direction.
pub const FUZZ_REQUEST_ID: u64 = 1;

/// The push-server's handle key in the fuzz body (handles in requests are opened with it).
pub const FUZZ_HANDLE_KEY: [u8; 32] = [9; 32];

/// The line a reader hands over: up to and including the first `\n`; `None` when the reader
/// would drop the connection instead (no `\n`, or longer than `MAX_LINE`).
pub fn line_of(body: &[u8]) -> Option<&[u8]> {
    let end = body.iter().position(|&b| b == b'\n')? + 1;
    (end <= MAX_LINE + 1).then_some(&body[..end])
}

/// Whether a JSON value holds a float anywhere (serde_json's default float parsing is not
/// guaranteed to round-trip the shortest representation bit for bit).
fn has_float(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_f64(),
        Value::Array(a) => a.iter().any(has_float),
        Value::Object(o) => o.values().any(has_float),
        _ => false,
    }
}

/// `push_protocol`: selector % 2 → 0: the server reads a request line, 1: the client
/// (`RemoteGateway`) reads the response line to request [`FUZZ_REQUEST_ID`].
///
/// Requests: the request re-encodes (client encoder) and decodes to the same value; a submit's
/// job is validated and a handle target opened with [`FUZZ_HANDLE_KEY`]; a register's valid
/// address seals into a handle that opens back to it; a line that does not decode gets an
/// error reply (with the line's id, if any) that the client reads back as that error.
/// Responses: the `ok` value re-encodes (server encoder) to a line that decodes to the same
/// value, and the typed replies (submit outcome, feedback events, handle) round trip; an
/// error keeps its code.
pub fn push_protocol(data: &[u8]) -> bool {
    matches!(push_protocol_result(data), Some(Ok(_)))
}

/// The body of [`push_protocol`]: `None` when there is no line (empty input, no `\n`, too
/// long); else what the reader made of it: server side `Ok(op)` (`"submit"`, `"ping"`, …),
/// client side `Ok(reply)` (`"outcome"`, `"feedback"`, `"handle"` when the typed reply reads,
/// else `"value"`); or the error code (`"protocol"`, `"auth"`, …).
pub fn push_protocol_result(data: &[u8]) -> Option<Result<&'static str, &'static str>> {
    let (&sel, body) = data.split_first()?;
    let line = line_of(body)?;
    Some(if sel % 2 == 0 {
        server_reads(line)
    } else {
        client_reads(line)
    })
}

fn server_reads(line: &[u8]) -> Result<&'static str, &'static str> {
    let env = match decode_request(line) {
        Ok(env) => env,
        Err((id, e)) => {
            assert!(matches!(e, GatewayError::Protocol(_)), "{e:?}");
            let reply = encode_response(id, &Err(e)).expect("an error reply encodes");
            let back = decode_response(&reply, id);
            assert!(
                matches!(back, Err(GatewayError::Protocol(_))),
                "the client reads the error reply as a protocol error: {back:?}"
            );
            return Err(e_code(&back));
        }
    };
    let enc = encode_request(&env).expect("a decoded request re-encodes");
    assert_eq!(enc.last(), Some(&b'\n'));
    assert_eq!(
        enc.iter().filter(|&&b| b == b'\n').count(),
        1,
        "one request per line"
    );
    let again = decode_request(&enc).expect("a re-encoded request decodes");
    assert_eq!(again, env, "request round trip");
    let key = HandleKey::from_bytes(FUZZ_HANDLE_KEY);
    let op = match &env.req {
        Request::Hello { .. } => "hello",
        Request::Submit { .. } => "submit",
        Request::Feedback { .. } => "feedback",
        Request::AckFeedback { .. } => "ack_feedback",
        Request::Register { .. } => "register",
        Request::Ping => "ping",
    };
    match &env.req {
        Request::Submit { job } => {
            let _ = job.validate();
            if let push_api::PushTarget::Handle(h) = &job.target {
                let _ = key.open_sealed(h);
            }
        }
        Request::Register { address } => {
            if address.validate().is_ok() {
                match key.seal(address) {
                    Ok(h) => assert_eq!(
                        key.open_sealed(&h),
                        Ok(Sealed::Address(address.clone())),
                        "sealed handle opens to the address"
                    ),
                    Err(e) => assert!(matches!(e, push_api::HandleError::TooLong(_)), "{e:?}"),
                }
            }
        }
        Request::Hello { .. }
        | Request::Feedback { .. }
        | Request::AckFeedback { .. }
        | Request::Ping => {}
    }
    // A reply to this request id reads back on the client side.
    let Envelope { id, .. } = env;
    let ok = encode_response(id, &Ok(Value::from(op))).expect("a reply encodes");
    assert_eq!(decode_response(&ok, id).ok(), Some(Value::from(op)));
    Ok(op)
}

fn e_code(r: &Result<Value, GatewayError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(e) => e.code(),
    }
}

fn client_reads(line: &[u8]) -> Result<&'static str, &'static str> {
    match decode_response(line, FUZZ_REQUEST_ID) {
        Ok(v) => {
            let enc = encode_response(FUZZ_REQUEST_ID, &Ok(v.clone())).expect("re-encodes");
            let back = decode_response(&enc, FUZZ_REQUEST_ID).expect("re-encoded reply decodes");
            if !has_float(&v) {
                assert_eq!(back, v, "reply value round trip");
            }
            let mut kind = "value";
            if typed_round_trip::<SubmitOutcome>(v.get("outcome")) {
                kind = "outcome";
            }
            if typed_round_trip::<Vec<FeedbackEvent>>(Some(&v)) {
                kind = "feedback";
            }
            if typed_round_trip::<PushHandle>(v.get("handle")) {
                kind = "handle";
            }
            Ok(kind)
        }
        Err(e) => {
            let code = e.code();
            assert_eq!(
                GatewayError::from_code(code, String::new()).code(),
                code,
                "error code round trip"
            );
            let reply = encode_response(FUZZ_REQUEST_ID, &Err(e)).expect("an error reply encodes");
            let back = decode_response(&reply, FUZZ_REQUEST_ID)
                .expect_err("an error reply decodes to an error");
            assert_eq!(back.code(), code, "error code survives the wire");
            Err(code)
        }
    }
}

/// How `RemoteGateway` reads a typed reply (`serde_json::from_value`); when it succeeds the
/// value serializes and reads back equal. Whether it read.
fn typed_round_trip<T>(v: Option<&Value>) -> bool
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    let v = v.cloned().unwrap_or(Value::Null);
    let Ok(t) = serde_json::from_value::<T>(v) else {
        return false;
    };
    let again = serde_json::to_value(&t).expect("a typed reply serializes");
    assert_eq!(
        serde_json::from_value::<T>(again).ok().as_ref(),
        Some(&t),
        "typed reply round trip"
    );
    true
}
