//! Push providers, one module each, behind one trait.

pub mod apns;
pub mod sink;
pub mod webpush;

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::error::PushError;
use crate::job::{ApnsEnv, DeviceAddress, JobId, PushKind, PushType};

/// One push as a provider sees it (target already resolved from a handle if needed).
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub job_id: JobId,
    pub kind: PushKind,
    pub address: &'a DeviceAddress,
    pub payload: &'a [u8],
    pub push_type: PushType,
    pub priority: Option<u8>,
    pub expires_at: Option<u64>,
    pub collapse_id: Option<&'a str>,
}

pub type SendFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PushError>> + Send + 'a>>;

/// A push provider. `send` returns `Ok(())` only once the provider accepted the push.
pub trait Provider: Send + Sync {
    /// Metric label of the provider.
    fn name(&self) -> &'static str;
    fn send<'a>(&'a self, d: Delivery<'a>) -> SendFuture<'a>;
}

/// The configured providers, by address kind.
#[derive(Clone, Default)]
pub struct Providers {
    apns: HashMap<ApnsEnv, Arc<dyn Provider>>,
    webpush: Option<Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Providers")
            .field("apns", &self.apns.keys().collect::<Vec<_>>())
            .field("webpush", &self.webpush.is_some())
            .finish()
    }
}

/// What to do with an address.
pub enum Route {
    Send(Arc<dyn Provider>),
    /// `apns_null`: accepted and never pushed.
    Null,
}

impl Providers {
    pub fn new() -> Providers {
        Providers::default()
    }

    pub fn with_apns(mut self, env: ApnsEnv, p: Arc<dyn Provider>) -> Providers {
        self.apns.insert(env, p);
        self
    }

    pub fn with_webpush(mut self, p: Arc<dyn Provider>) -> Providers {
        self.webpush = Some(p);
        self
    }

    pub fn route(&self, a: &DeviceAddress) -> Result<Route, PushError> {
        match a {
            DeviceAddress::Apns {
                env: ApnsEnv::Null, ..
            } => Ok(Route::Null),
            DeviceAddress::Apns { env, .. } => self
                .apns
                .get(env)
                .cloned()
                .map(Route::Send)
                .ok_or(PushError::NoProvider(env.label())),
            DeviceAddress::WebPush(_) => self
                .webpush
                .clone()
                .map(Route::Send)
                .ok_or(PushError::NoProvider("webpush")),
        }
    }
}
