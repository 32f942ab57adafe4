//! Push providers: one folder per provider, behind the [`Provider`] trait, selected from a map.
//!
//! * `apns/`: APNs (HTTP/2, ES256 provider tokens), one provider per environment;
//!   `webpush/`: Web Push / UnifiedPush (RFC 8030, 8291, 8292); `sink/`: in memory, for tests
//!   (built by the tests, not configurable).
//! * [`REGISTRY`]: the configurable providers, name → constructor, one line each. A constructor
//!   (`<provider>/setup.rs`, `from_config`) reads its section of the [`Config`] and returns the
//!   routes it serves, none when its section is off. A route is the kind of device address, as
//!   [`DeviceAddress::provider_label`] names it (`apns_prod`, `apns_dev`, `apns_test`,
//!   `webpush`).
//! * [`Providers`]: the map route → provider the dispatcher selects from ([`Providers::route`]),
//!   built from the registry by [`Providers::from_config`].
//!
//! Adding a provider is one folder `provider/<name>/` (the [`Provider`] impl and its
//! `setup::from_config`) and one registration line in [`REGISTRY`] (a new kind of address also
//! needs its `DeviceAddress` variant in push-api).

pub mod apns;
pub mod sink;
pub mod webpush;

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use crate::config::Config;
use crate::error::PushError;
use crate::job::{ApnsEnv, DeviceAddress, JobId, PushKind, PushType};

/// Routes (address kinds, [`DeviceAddress::provider_label`]) with the provider serving each.
pub type Routes = Vec<(&'static str, Arc<dyn Provider>)>;

/// A provider's constructor: the routes `cfg` enables for it; empty when the provider is off.
pub type Constructor = fn(&Config) -> Result<Routes, SetupError>;

/// The configurable providers, name → constructor: one registration line per provider.
pub const REGISTRY: &[(&str, Constructor)] = &[
    ("apns", apns::setup::from_config),
    ("webpush", webpush::setup::from_config),
];

/// The route of every Web Push / UnifiedPush subscription
/// ([`DeviceAddress::provider_label`] of [`DeviceAddress::WebPush`]).
pub const WEBPUSH_ROUTE: &str = "webpush";

/// Why a provider cannot be set up from the configuration.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// A file the provider needs (key) cannot be read or parsed.
    #[error("{path}: {msg}")]
    File { path: PathBuf, msg: String },
    #[error("{0}")]
    Setup(String),
}

impl SetupError {
    pub fn file(path: &Path, e: impl std::fmt::Display) -> SetupError {
        SetupError::File {
            path: path.to_path_buf(),
            msg: e.to_string(),
        }
    }
}

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

/// The configured providers, by route (the address kind, [`DeviceAddress::provider_label`]).
#[derive(Clone, Default)]
pub struct Providers {
    routes: HashMap<&'static str, Arc<dyn Provider>>,
}

impl std::fmt::Debug for Providers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut routes: Vec<_> = self.routes.keys().collect();
        routes.sort();
        f.debug_struct("Providers")
            .field("routes", &routes)
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

    /// Every provider `cfg` enables, from [`REGISTRY`].
    pub fn from_config(cfg: &Config) -> Result<Providers, SetupError> {
        Providers::from_registry(cfg, REGISTRY)
    }

    /// Every provider `cfg` enables, from `registry` (in its order; the first error stops).
    /// Two providers claiming one route is a setup error.
    pub fn from_registry(
        cfg: &Config,
        registry: &[(&str, Constructor)],
    ) -> Result<Providers, SetupError> {
        let mut p = Providers::new();
        let mut owner: HashMap<&'static str, &str> = HashMap::new();
        for (name, make) in registry {
            for (route, provider) in make(cfg)? {
                if let Some(other) = owner.insert(route, name) {
                    return Err(SetupError::Setup(format!(
                        "providers {other} and {name} both serve {route}"
                    )));
                }
                p = p.with(route, provider);
            }
        }
        Ok(p)
    }

    /// Serves `route` (an address kind, [`DeviceAddress::provider_label`]) with `p`.
    pub fn with(mut self, route: &'static str, p: Arc<dyn Provider>) -> Providers {
        self.routes.insert(route, p);
        self
    }

    pub fn with_apns(self, env: ApnsEnv, p: Arc<dyn Provider>) -> Providers {
        self.with(env.label(), p)
    }

    pub fn with_webpush(self, p: Arc<dyn Provider>) -> Providers {
        self.with(WEBPUSH_ROUTE, p)
    }

    /// The routes served, sorted.
    pub fn routes(&self) -> Vec<&'static str> {
        let mut r: Vec<_> = self.routes.keys().copied().collect();
        r.sort_unstable();
        r
    }

    pub fn route(&self, a: &DeviceAddress) -> Result<Route, PushError> {
        if let DeviceAddress::Apns {
            env: ApnsEnv::Null, ..
        } = a
        {
            return Ok(Route::Null);
        }
        let label = a.provider_label();
        self.routes
            .get(label)
            .cloned()
            .map(Route::Send)
            .ok_or(PushError::NoProvider(label))
    }
}
