//! The `apns_null` provider (the apps' "test server" button, token `test_ntf_token`): nothing is
//! ever pushed, but the verification push counts as delivered, as the reference's null push
//! client succeeds — the token goes REGISTERED → CONFIRMED, and `TVFY` is not possible (the
//! code never reached anyone), exactly as for a real device that did not answer.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hush_crypto::{Ed25519Secret, X25519Secret};
use hush_proto::ntf::{
    DeviceToken, NtfCommand, NtfResponse, PublicKeyDer, PushProvider, TokenStatus,
};
use ntf_server::PolicyMode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn null_token_is_confirmed_without_a_push() {
    let dir = tempfile::tempdir().unwrap();
    let push = push().await;
    let ntf = Ntf::start(ntf_config(dir.path(), false, PolicyMode::Reference), &push).await;
    let mut c = ntf.client().await;
    let key = Ed25519Secret::generate();
    let dh = X25519Secret::generate();
    let tnew = NtfCommand::Tnew {
        token: DeviceToken {
            provider: PushProvider::ApnsNull,
            token: b"test_ntf_token".to_vec(),
        },
        verify_key: PublicKeyDer::auth_key(key.public().to_spki_der()).unwrap(),
        dh_key: PublicKeyDer::dh_key(dh.public().to_spki_der()).unwrap(),
    };
    let (_, r) = c.cmd(Some(&key), b"", &tnew).await;
    let NtfResponse::TknId { token_id, .. } = r else {
        panic!("TNEW: {r:?}")
    };
    // The status moves to CONFIRMED (no provider round trip: at once, but poll briefly).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, r) = c.cmd(Some(&key), &token_id, &NtfCommand::Tchk).await;
        match r {
            NtfResponse::Tkn(TokenStatus::Confirmed) => break,
            NtfResponse::Tkn(TokenStatus::Registered) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => panic!("TCHK of an apns_null token: {other:?}"),
        }
    }
    // Nothing reached the sink.
    assert!(
        push.received("test_ntf_token").is_empty(),
        "apns_null was pushed"
    );
}
