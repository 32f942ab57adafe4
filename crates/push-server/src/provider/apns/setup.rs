//! The APNs provider's registration ([`super::super::REGISTRY`]): one [`ApnsProvider`] per
//! configured environment (`[APNS] prod_url`, `dev_url`, `test_url`), sharing the `.p8` key.

use std::sync::Arc;
use std::time::Duration;

use super::{ApnsConfig, ApnsProvider};
use crate::config::Config;
use crate::http_util::UrlParts;
use crate::job::ApnsEnv;
use crate::jwt::Es256Key;
use crate::provider::{Routes, SetupError};

/// The routes `[APNS]` enables (none with `enable = off`).
pub fn from_config(cfg: &Config) -> Result<Routes, SetupError> {
    let mut out: Routes = Vec::new();
    if !cfg.apns.enable {
        return Ok(out);
    }
    let pem =
        std::fs::read(&cfg.apns.key_file).map_err(|e| SetupError::file(&cfg.apns.key_file, e))?;
    let key = Es256Key::from_pem(&pem).map_err(|e| SetupError::file(&cfg.apns.key_file, e))?;
    if cfg.apns.team_id.is_empty() || cfg.apns.key_id.is_empty() {
        return Err(SetupError::Setup(
            "[APNS] team_id and key_id are required".into(),
        ));
    }
    for (env, url, ca) in [
        (ApnsEnv::Prod, &cfg.apns.prod_url, None),
        (ApnsEnv::Dev, &cfg.apns.dev_url, None),
        (
            ApnsEnv::Test,
            &cfg.apns.test_url,
            cfg.apns.test_ca_file.clone(),
        ),
    ] {
        let Some(url) = url else { continue };
        let u = UrlParts::parse(url)
            .filter(|u| u.https)
            .ok_or_else(|| SetupError::Setup(format!("[APNS] bad https URL: {url}")))?;
        let provider = ApnsProvider::new(ApnsConfig {
            label: env.label(),
            host: u.host,
            port: u.port,
            topic: cfg.apns.topic.clone(),
            team_id: cfg.apns.team_id.clone(),
            key_id: cfg.apns.key_id.clone(),
            key: key.clone(),
            sig_format: cfg.apns.sig_format,
            jwt_refresh: cfg.apns.jwt_refresh,
            allow_short_refresh: false,
            ca_file: ca,
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_payload: cfg.apns.max_payload,
        })
        .map_err(|e| SetupError::Setup(e.to_string()))?;
        out.push((env.label(), Arc::new(provider)));
    }
    Ok(out)
}
