//! The Web Push provider's registration ([`super::super::REGISTRY`]): one [`WebPushProvider`]
//! (`[WEBPUSH]`, VAPID key file) for every Web Push / UnifiedPush subscription.

use std::sync::Arc;
use std::time::Duration;

use super::{Vapid, WebPushConfig, WebPushProvider};
use crate::config::Config;
use crate::jwt::Es256Key;
use crate::provider::{Routes, SetupError, WEBPUSH_ROUTE};

/// The route `[WEBPUSH]` enables (none with `enable = off`).
pub fn from_config(cfg: &Config) -> Result<Routes, SetupError> {
    if !cfg.webpush.enable {
        return Ok(Vec::new());
    }
    let f = &cfg.webpush.vapid_key_file;
    let pem = std::fs::read(f).map_err(|e| SetupError::file(f, e))?;
    let key = Es256Key::from_pem(&pem).map_err(|e| SetupError::file(f, e))?;
    let provider = WebPushProvider::new(WebPushConfig {
        vapid: Vapid {
            key,
            subject: cfg.webpush.subject.clone(),
            lifetime: Duration::from_secs(12 * 3600),
        },
        ca_file: cfg.webpush.ca_file.clone(),
        endpoints: cfg.webpush.endpoints,
        default_ttl: cfg.service.default_ttl,
        timeout: Duration::from_secs(30),
    })
    .map_err(|e| SetupError::Setup(e.to_string()))?;
    Ok(vec![(WEBPUSH_ROUTE, Arc::new(provider))])
}
