//! `ntf-server init` / `delete`: certificates (CA + online certificate, default **Ed448** like
//! the reference's `ntf-server init`), `fingerprint`, and a commented `ntf-server.ini`.

use std::path::PathBuf;

use hush_crypto::SignAlgorithm;
use hush_crypto::identity::ServerIdentity;

use crate::config::{Paths, ini_template};

/// CA certificate common name.
pub const CA_COMMON_NAME: &str = "NTF server CA";

/// Directory (inside the configuration directory) of the service certificate the server
/// presents to relays with `[SUBSCRIBER] use_service_credentials = on`: a CA and a leaf in
/// the same files as the server's own identity (`ca.crt`, `server.crt`, `server.key`...).
/// The relays know the service by the CA's fingerprint, so it must outlive restarts.
pub const SERVICE_DIR: &str = "service";

/// Common name of the service CA.
pub const SERVICE_CA_COMMON_NAME: &str = "NTF service CA";

/// The notifier service credentials in `<config dir>/service`, created (Ed25519 CA + leaf,
/// private files) when absent.
pub fn service_credentials(
    config_dir: &std::path::Path,
) -> Result<hush_transport::ServiceCredentials, InitError> {
    let dir = config_dir.join(SERVICE_DIR);
    let id = if dir.join(hush_crypto::identity::SERVER_KEY_FILE).exists() {
        ServerIdentity::load(&dir)?
    } else {
        if !dir.is_dir() {
            hush_server_common::private::create_private_dir(&dir)?;
        }
        let ca = hush_crypto::generate_ca(SignAlgorithm::Ed25519, SERVICE_CA_COMMON_NAME)?;
        let online = hush_crypto::generate_online_cert(&ca, SignAlgorithm::Ed25519, "ntf service")?;
        let fingerprint = ca.fingerprint();
        let id = ServerIdentity {
            ca_cert_der: ca.cert_der,
            ca_key: Some(ca.key),
            online,
            fingerprint,
        };
        id.save(&dir)?;
        id
    };
    Ok(hush_transport::ServiceCredentials {
        role: hush_proto::handshake::ServiceRole::Notifier,
        cert: hush_transport::ClientCertificate {
            chain: id.chain_der(),
            key: id.online.key.clone(),
        },
    })
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("already initialized: {0} exists (use --force to overwrite)")]
    AlreadyInitialized(PathBuf),
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    #[error("crypto: {0}")]
    Crypto(#[from] hush_crypto::CryptoError),
    #[cfg(feature = "embedded-push")]
    #[error("push-server: {0}")]
    Push(#[from] push_server::cli::CliError),
}

/// Name of the in-process push-server's configuration directory inside the ntf-server's
/// configuration directory (`[PUSH] mode = in_process` without `config_dir` uses it).
pub const PUSH_DIR: &str = "push";

/// Default listen port of the in-process push-server (the push-server's default, loopback).
pub const DEFAULT_PUSH_PORT: u16 = push_api::DEFAULT_PORT;

/// The push-server's configuration file in [`PUSH_DIR`] (`push_server::config::INI_FILE`; a
/// build without the `embedded-push` feature still removes that directory in [`delete`]).
const PUSH_INI_FILE: &str = "push-server.ini";

/// What [`init_push`] did.
#[cfg(feature = "embedded-push")]
#[derive(Debug)]
pub enum PushInit {
    /// A new push-server configuration (no push provider enabled).
    Created(push_server::cli::InitOutcome),
    /// A push-server configuration was already there (e.g. `init --force`): kept as it is.
    Kept,
}

/// The in-process push-server's configuration (`<config dir>/push`, see [`PUSH_DIR`]):
/// `push-server init` with every provider off, listening on 127.0.0.1:`port` (devices that
/// register push handles in split mode, other ntf-servers). With it `ntf-server start` runs
/// right after `init`; pushes are delivered once `[APNS]` or `[WEBPUSH]` is enabled in its
/// `push-server.ini`. An existing configuration is kept. Only with the `embedded-push` feature.
#[cfg(feature = "embedded-push")]
pub fn init_push(paths: &Paths, port: u16) -> Result<PushInit, InitError> {
    let dir = paths.config_dir.join(PUSH_DIR);
    if dir.join(PUSH_INI_FILE).exists() {
        return Ok(PushInit::Kept);
    }
    let out = push_server::cli::init(
        &dir,
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        port,
        "ntf-server",
    )?;
    Ok(PushInit::Created(out))
}

/// Options of `ntf-server init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub paths: Paths,
    /// Host name or IP written into the online certificate.
    pub common_name: String,
    pub sign_algorithm: SignAlgorithm,
    pub port: u16,
    /// (port, admin password, user password).
    pub control: Option<(u16, String, String)>,
    pub store_log: bool,
    pub force: bool,
}

fn random_password() -> String {
    hush_proto::encoding::base64url_encode_unpadded(&hush_crypto::random_nonce())
}

/// Writes the certificates and the ini; returns the CA fingerprint.
pub fn init(opts: &InitOptions) -> Result<[u8; 32], InitError> {
    let ini = opts.paths.ini_file();
    let ca = opts
        .paths
        .config_dir
        .join(hush_crypto::identity::CA_CERT_FILE);
    if !opts.force {
        for f in [&ini, &ca] {
            if f.exists() {
                return Err(InitError::AlreadyInitialized(f.clone()));
            }
        }
    }
    // A new configuration directory is private (an existing one is the operator's: the keys and
    // the ini in it are 0600 either way); the data directory is private, tightened if it exists.
    if !opts.paths.config_dir.is_dir() {
        hush_server_common::private::create_private_dir(&opts.paths.config_dir)?;
    }
    hush_server_common::private_start::prepare_private_dir(
        &opts.paths.data_dir,
        "ntf-server data directory",
    )?;
    let ca = hush_crypto::generate_ca(opts.sign_algorithm, CA_COMMON_NAME)?;
    let online = hush_crypto::generate_online_cert(&ca, opts.sign_algorithm, &opts.common_name)?;
    let fingerprint = ca.fingerprint();
    let id = ServerIdentity {
        ca_cert_der: ca.cert_der,
        ca_key: Some(ca.key),
        online,
        fingerprint,
    };
    id.save(&opts.paths.config_dir)?;
    // The service certificate too (used with `[SUBSCRIBER] use_service_credentials = on`);
    // a new one on `init --force`.
    let service = opts.paths.config_dir.join(SERVICE_DIR);
    if service.is_dir() {
        std::fs::remove_dir_all(&service)?;
    }
    service_credentials(&opts.paths.config_dir)?;
    let control = opts
        .control
        .as_ref()
        .map(|(p, a, u)| (*p, a.as_str(), u.as_str()));
    // The ini holds the control port passwords: private like the keys.
    hush_server_common::private::write_private(
        &ini,
        ini_template(opts.port, control, opts.store_log).as_bytes(),
    )?;
    Ok(fingerprint)
}

/// Random control-port passwords (admin, user).
pub fn control_passwords() -> (String, String) {
    (random_password(), random_password())
}

/// `ntf-server delete`: removes the files `init` created and the store; returns what was removed.
pub fn delete(paths: &Paths) -> Result<Vec<PathBuf>, InitError> {
    use hush_crypto::identity::*;
    let mut removed = Vec::new();
    let files = [
        paths.ini_file(),
        paths.config_dir.join(CA_CERT_FILE),
        paths.config_dir.join(CA_KEY_FILE),
        paths.config_dir.join(SERVER_CERT_FILE),
        paths.config_dir.join(SERVER_KEY_FILE),
        paths.config_dir.join(FINGERPRINT_FILE),
        paths.data_dir.join(crate::config::STORE_FILE),
        paths
            .data_dir
            .join(format!("{}-wal", crate::config::STORE_FILE)),
        paths
            .data_dir
            .join(format!("{}-shm", crate::config::STORE_FILE)),
    ];
    for f in files {
        if f.exists() {
            std::fs::remove_file(&f)?;
            removed.push(f);
        }
    }
    let service = paths.config_dir.join(SERVICE_DIR);
    if service.is_dir() {
        std::fs::remove_dir_all(&service)?;
        removed.push(service);
    }
    // The push-server configuration `init` created (keys, credential, outbox).
    let push = paths.config_dir.join(PUSH_DIR);
    if push.join(PUSH_INI_FILE).exists() {
        std::fs::remove_dir_all(&push)?;
        removed.push(push);
    }
    for d in [&paths.data_dir, &paths.config_dir] {
        if std::fs::remove_dir(d).is_ok() {
            removed.push(d.clone());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "embedded-push")]
    #[test]
    fn push_ini_file_is_the_push_servers() {
        assert_eq!(PUSH_INI_FILE, push_server::config::INI_FILE);
    }

    #[cfg(feature = "embedded-push")]
    #[test]
    fn init_loads_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("etc"),
            data_dir: dir.path().join("var"),
        };
        let opts = InitOptions {
            paths: paths.clone(),
            common_name: "127.0.0.1".into(),
            sign_algorithm: SignAlgorithm::Ed448,
            port: 443,
            control: Some((5227, "a".into(), "u".into())),
            store_log: true,
            force: false,
        };
        let fp = init(&opts).unwrap();
        assert!(matches!(init(&opts), Err(InitError::AlreadyInitialized(_))));
        let id = ServerIdentity::load(&paths.config_dir).unwrap();
        assert_eq!(id.fingerprint, fp);
        let (c, w) = crate::Config::load(paths.clone()).unwrap();
        assert!(w.is_empty());
        assert_eq!(c.control_port, Some(5227));
        // The service certificate: made by init, the same (same CA) when loaded again.
        let s1 = service_credentials(&paths.config_dir).unwrap();
        let s2 = service_credentials(&paths.config_dir).unwrap();
        assert_eq!(s1.cert.chain, s2.cert.chain);
        assert_eq!(s1.cert.chain.len(), 2, "leaf + CA");
        assert_eq!(s1.role, hush_proto::handshake::ServiceRole::Notifier);
        let removed = delete(&paths).unwrap();
        assert!(removed.len() >= 6);
        assert!(!paths.ini_file().exists());
        assert!(!paths.config_dir.join(SERVICE_DIR).exists());
    }

    /// `init_push` writes a push-server configuration that loads with no provider enabled,
    /// keeps an existing one, and `delete` removes it.
    #[cfg(feature = "embedded-push")]
    #[test]
    fn init_push_writes_a_loadable_push_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("etc"),
            data_dir: dir.path().join("var"),
        };
        init(&InitOptions {
            paths: paths.clone(),
            common_name: "127.0.0.1".into(),
            sign_algorithm: SignAlgorithm::Ed25519,
            port: 443,
            control: None,
            store_log: true,
            force: false,
        })
        .unwrap();
        let PushInit::Created(out) = init_push(&paths, 0).unwrap() else {
            panic!("not created")
        };
        let pdir = paths.config_dir.join(PUSH_DIR);
        let (pcfg, w) = push_server::config::Config::load(&pdir).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert!(!pcfg.apns.enable && !pcfg.webpush.enable);
        assert_eq!(pcfg.listen.ip(), std::net::Ipv4Addr::LOCALHOST);
        assert_eq!(
            pcfg.clients.get("ntf-server"),
            Some(&out.credential),
            "the credential init printed"
        );
        assert!(matches!(init_push(&paths, 0).unwrap(), PushInit::Kept));
        let removed = delete(&paths).unwrap();
        assert!(removed.contains(&pdir));
        assert!(!pdir.exists() && !paths.config_dir.exists());
    }

    /// Keys and the ini are 0600, the new configuration directory and the data directory 0700;
    /// a pre-existing 0755 data directory is tightened.
    #[cfg(unix)]
    #[test]
    fn init_files_and_directories_are_private() {
        use hush_server_common::private::{mode_of, set_mode};
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("etc"),
            data_dir: dir.path().join("var"),
        };
        std::fs::create_dir(&paths.data_dir).unwrap();
        set_mode(&paths.data_dir, 0o755).unwrap();
        init(&InitOptions {
            paths: paths.clone(),
            common_name: "127.0.0.1".into(),
            sign_algorithm: SignAlgorithm::Ed25519,
            port: 443,
            control: Some((5227, "a".into(), "u".into())),
            store_log: true,
            force: false,
        })
        .unwrap();
        assert_eq!(mode_of(&paths.data_dir).unwrap(), 0o700);
        assert_eq!(mode_of(&paths.config_dir).unwrap(), 0o700);
        for f in [
            hush_crypto::identity::CA_KEY_FILE,
            hush_crypto::identity::SERVER_KEY_FILE,
            crate::config::INI_FILE,
        ] {
            assert_eq!(mode_of(&paths.config_dir.join(f)).unwrap(), 0o600, "{f}");
        }
    }
}
