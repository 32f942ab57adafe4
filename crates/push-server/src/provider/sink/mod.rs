//! In-memory sink provider: records every push, can be scripted to fail (tests, local runs).
//! For an APNs-shaped sink over the network use the `apns-sink` crate with the APNs provider.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use tokio::sync::Notify;

use super::{Delivery, Provider, SendFuture};
use crate::error::PushError;
use crate::job::{DeviceAddress, JobId, PushKind, PushType};

/// One push the sink accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkRecord {
    pub job_id: JobId,
    pub kind: PushKind,
    pub address: DeviceAddress,
    pub payload: Vec<u8>,
    pub push_type: PushType,
    pub priority: Option<u8>,
    pub collapse_id: Option<String>,
}

#[derive(Default)]
pub struct MemorySink {
    records: Mutex<Vec<SinkRecord>>,
    /// Scripted failures per address (consumed one per attempt).
    failures: Mutex<HashMap<DeviceAddressKey, VecDeque<PushError>>>,
    attempts: Mutex<u64>,
    notify: Notify,
}

type DeviceAddressKey = String;

fn key(a: &DeviceAddress) -> String {
    serde_json::to_string(a).unwrap_or_default()
}

impl std::fmt::Debug for MemorySink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemorySink(..)")
    }
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// The next attempts for `a` fail with these errors, in order.
    pub fn fail_next(&self, a: &DeviceAddress, errors: impl IntoIterator<Item = PushError>) {
        if let Ok(mut f) = self.failures.lock() {
            f.entry(key(a)).or_default().extend(errors);
        }
    }

    pub fn records(&self) -> Vec<SinkRecord> {
        self.records.lock().map(|r| r.clone()).unwrap_or_default()
    }

    pub fn attempts(&self) -> u64 {
        self.attempts.lock().map(|a| *a).unwrap_or(0)
    }

    /// Waits until at least `n` pushes were recorded.
    pub async fn wait_for(&self, n: usize, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let notified = self.notify.notified();
            if self.records.lock().map(|r| r.len()).unwrap_or(0) >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }
}

impl Provider for MemorySink {
    fn name(&self) -> &'static str {
        "sink"
    }

    fn send<'a>(&'a self, d: Delivery<'a>) -> SendFuture<'a> {
        Box::pin(async move {
            if let Ok(mut a) = self.attempts.lock() {
                *a += 1;
            }
            let scripted = self
                .failures
                .lock()
                .ok()
                .and_then(|mut f| f.get_mut(&key(d.address)).and_then(|q| q.pop_front()));
            if let Some(e) = scripted {
                return Err(e);
            }
            if let Ok(mut r) = self.records.lock() {
                r.push(SinkRecord {
                    job_id: d.job_id,
                    kind: d.kind,
                    address: d.address.clone(),
                    payload: d.payload.to_vec(),
                    push_type: d.push_type,
                    priority: d.priority,
                    collapse_id: d.collapse_id.map(str::to_string),
                });
            }
            self.notify.notify_waiters();
            Ok(())
        })
    }
}
