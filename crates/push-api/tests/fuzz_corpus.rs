//! Corpus replay for the cargo-fuzz target `push_protocol` (`fuzz/fuzz_targets/bodies/push.rs`,
//! included below): every file of `fuzz/corpus/push_protocol/` runs through the body the fuzzer
//! runs and must give its known outcome: the seeds' from [`seeds`] (lines made with the
//! protocol's own encoders), the others' (`regress-*`, inputs kept from fuzzing runs) from
//! [`EXPECTED`]. A missing or empty corpus directory, or a file without a known outcome, fails.
//!
//! Regenerate the seeds with
//! `cargo test -p push-api --test fuzz_corpus -- --ignored write_seed_corpus`.

#[path = "../../../fuzz/fuzz_targets/bodies/push.rs"]
mod bodies;

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use push_api::remote::{Envelope, Request, encode_request, encode_response};
use push_api::{
    ApnsEnv, DeviceAddress, FeedbackEvent, FeedbackReason, GatewayError, InvalidReason, JobId,
    PushHandle, PushJob, PushKind, PushTarget, PushType,
};
use serde_json::{Value, json};

type Outcome = Option<Result<&'static str, &'static str>>;

/// Corpus files that are not seeds, with their outcome.
const EXPECTED: &[(&str, Outcome)] = &[
    // register: APNs token of odd length (sealed as text, not hex bytes)
    ("fuzz-6028470f982e", Some(Ok("register"))),
    // register: Web Push with an unknown field
    ("fuzz-8b4a1c008611", Some(Ok("register"))),
    // submit: handle target that does not open, priority 6 (fails validation later)
    ("fuzz-beeef2a1150b", Some(Ok("submit"))),
    // feedback reply with an unknown field in an event
    ("fuzz-cc23e49531d6", Some(Ok("feedback"))),
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/push_protocol")
}

#[test]
fn replay_push_protocol() {
    let dir = corpus_dir();
    let entries = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("corpus directory {} missing: {e}", dir.display()));
    let mut files: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "corpus directory {} is empty",
        dir.display()
    );
    let mut known: BTreeMap<String, Outcome> =
        seeds().into_iter().map(|(n, _, o)| (n, o)).collect();
    for (name, o) in EXPECTED {
        known.insert(name.to_string(), *o);
    }
    let mut failures = Vec::new();
    let mut accepted = 0;
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let data = std::fs::read(f).unwrap();
        let expect = known
            .get(&name)
            .unwrap_or_else(|| panic!("no expected outcome for corpus file {name}"));
        match catch_unwind(AssertUnwindSafe(|| bodies::push_protocol_result(&data))) {
            Ok(got) => {
                assert_eq!(&got, expect, "corpus file {name}");
                assert_eq!(bodies::push_protocol(&data), matches!(got, Some(Ok(_))));
                accepted += usize::from(matches!(got, Some(Ok(_))));
            }
            Err(_) => failures.push(name),
        }
    }
    assert!(
        failures.is_empty(),
        "push_protocol: corpus inputs panicked: {failures:#?}"
    );
    assert!(accepted > 0, "no corpus line decoded");
}

fn with_sel(sel: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![sel];
    v.extend_from_slice(body);
    v
}

fn request(id: u64, req: Request) -> Vec<u8> {
    with_sel(0, &encode_request(&Envelope { id, req }).unwrap())
}

fn response(result: Result<Value, GatewayError>) -> Vec<u8> {
    with_sel(
        1,
        &encode_response(bodies::FUZZ_REQUEST_ID, &result).unwrap(),
    )
}

fn apns(n: u8) -> DeviceAddress {
    DeviceAddress::Apns {
        env: ApnsEnv::Test,
        token: format!("{n:02x}").repeat(32),
    }
}

fn job(target: PushTarget) -> PushJob {
    PushJob {
        job_id: JobId([0x11; 16]),
        target,
        kind: PushKind::Message,
        payload: br#"{"aps":{"content-available":1}}"#.to_vec(),
        push_type: PushType::Background,
        priority: Some(5),
        expires_at: Some(1_800_000_000),
        collapse_id: Some("c".into()),
        report_delivery: true,
    }
}

/// (file name, bytes, outcome).
fn seeds() -> Vec<(String, Vec<u8>, Outcome)> {
    // A handle of the right shape (version 1, nonce, ciphertext) that does not open: sealing
    // picks a random nonce, and the seeds must be reproducible.
    let handle = PushHandle(format!("AQ{}", "x".repeat(60)));
    let webpush: DeviceAddress = serde_json::from_value(json!({
        "provider": "web_push",
        "endpoint": "https://push.example.net/wp/abc",
        "p256dh": format!("BA{}", "A".repeat(85)),
        "auth": "AAAAAAAAAAAAAAAAAAAAAA",
    }))
    .unwrap();
    assert!(webpush.validate().is_ok(), "web push seed address");
    let events = vec![
        FeedbackEvent {
            seq: 7,
            job_id: JobId([0x22; 16]),
            target: PushTarget::Device(apns(3)),
            reason: FeedbackReason::InvalidToken(InvalidReason::Unregistered),
        },
        FeedbackEvent {
            seq: 8,
            job_id: JobId([0x33; 16]),
            target: PushTarget::Handle(PushHandle("h".into())),
            reason: FeedbackReason::Failed("expired".into()),
        },
        FeedbackEvent {
            seq: 9,
            job_id: JobId([0x44; 16]),
            target: PushTarget::Device(apns(4)),
            reason: FeedbackReason::Delivered,
        },
    ];
    let ok = |s| Some(Ok(s));
    let err = |s| Some(Err(s));
    vec![
        (
            "request.hello",
            request(
                1,
                Request::Hello {
                    credential: "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5".into(),
                },
            ),
            ok("hello"),
        ),
        (
            "request.submit.device",
            request(
                2,
                Request::Submit {
                    job: job(PushTarget::Device(apns(1))),
                },
            ),
            ok("submit"),
        ),
        (
            "request.submit.handle",
            request(
                3,
                Request::Submit {
                    job: job(PushTarget::Handle(handle.clone())),
                },
            ),
            ok("submit"),
        ),
        (
            "request.feedback",
            request(4, Request::Feedback { after: 6, max: 100 }),
            ok("feedback"),
        ),
        (
            "request.ack_feedback",
            request(5, Request::AckFeedback { up_to: 9 }),
            ok("ack_feedback"),
        ),
        ("request.ping", request(u64::MAX, Request::Ping), ok("ping")),
        (
            "request.register.apns",
            request(6, Request::Register { address: apns(5) }),
            ok("register"),
        ),
        (
            "request.register.webpush",
            request(7, Request::Register { address: webpush }),
            ok("register"),
        ),
        (
            "request.unknown_op",
            with_sel(0, b"{\"id\":8,\"op\":\"shutdown\"}\n"),
            err("protocol"),
        ),
        (
            "request.no_newline",
            with_sel(0, b"{\"id\":9,\"op\":\"ping\"}"),
            None,
        ),
        (
            "response.outcome",
            response(Ok(json!({"outcome": "duplicate"}))),
            ok("outcome"),
        ),
        (
            "response.feedback",
            response(Ok(serde_json::to_value(&events).unwrap())),
            ok("feedback"),
        ),
        (
            "response.handle",
            response(Ok(json!({ "handle": handle }))),
            ok("handle"),
        ),
        ("response.pong", response(Ok(json!("pong"))), ok("value")),
        (
            "response.err.auth",
            response(Err(GatewayError::Auth)),
            err("auth"),
        ),
        (
            "response.err.invalid_job",
            response(Err(GatewayError::InvalidJob("payload too large".into()))),
            err("invalid_job"),
        ),
        (
            "response.err.storage",
            response(Err(GatewayError::Storage("disk".into()))),
            err("storage"),
        ),
        (
            "response.id_mismatch",
            with_sel(1, b"{\"id\":2,\"ok\":{}}\n"),
            err("protocol"),
        ),
    ]
    .into_iter()
    .map(|(n, b, o)| (format!("seed-{n}"), b, o))
    .collect()
}

#[test]
fn seed_corpus_matches() {
    let seeds = seeds();
    assert!(seeds.len() >= 15);
    for (name, bytes, outcome) in &seeds {
        let path = corpus_dir().join(name);
        let on_disk = std::fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "seed {} missing ({e}); run write_seed_corpus",
                path.display()
            )
        });
        assert_eq!(&on_disk, bytes, "seed {} differs", path.display());
        assert_eq!(&bodies::push_protocol_result(bytes), outcome, "seed {name}");
    }
}

#[test]
#[ignore = "writes fuzz/corpus/push_protocol seed files; run on purpose after the protocol changes"]
fn write_seed_corpus() {
    std::fs::create_dir_all(corpus_dir()).unwrap();
    for (name, bytes, _) in seeds() {
        std::fs::write(corpus_dir().join(name), bytes).unwrap();
    }
}
