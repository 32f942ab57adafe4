//! `loadgen tls-floor`: what one idle server-side TLS 1.3 connection costs in OpenSSL alone, with
//! hush's settings and variants of them. A child process (`loadgen tls-floor-server`) accepts N
//! connections with a bare tokio task per connection that waits for a byte; the parent opens them
//! and reads the child's RSS. The `tcp` variant (no TLS) is the baseline for the task + socket.

use std::time::Duration;

use openssl::asn1::Asn1Time;
use openssl::hash::MessageDigest;
use openssl::pkey::PKey;
use openssl::ssl::{
    Ssl, SslContext, SslContextBuilder, SslMethod, SslMode, SslOptions, SslSessionCacheMode,
    SslVerifyMode, SslVersion,
};
use openssl::x509::{X509, X509NameBuilder};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use crate::LoadError;

/// Server settings to compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// Plain TCP (baseline: task + socket).
    Tcp,
    /// hush-transport's server settings: TLS 1.3 only, ChaCha20-Poly1305, X25519/X448,
    /// Ed25519 certificate, no tickets, session cache off, SSL_MODE_RELEASE_BUFFERS, client
    /// certificate requested (any accepted).
    Hush,
    /// As `hush` without requesting a client certificate.
    NoClientCert,
    /// As `hush` with TLS_AES_256_GCM_SHA384.
    Aes,
    /// As `hush` without SSL_MODE_RELEASE_BUFFERS.
    KeepBuffers,
}

fn err(e: impl std::fmt::Display) -> LoadError {
    LoadError::proto("TLS", e.to_string())
}

/// The server context for `v` (`None` for [`Variant::Tcp`]).
pub fn server_context(v: Variant) -> Result<Option<SslContext>, LoadError> {
    if v == Variant::Tcp {
        return Ok(None);
    }
    let key = PKey::generate_ed25519().map_err(err)?;
    let mut name = X509NameBuilder::new().map_err(err)?;
    name.append_entry_by_text("CN", "loadgen").map_err(err)?;
    let name = name.build();
    let mut cert = X509::builder().map_err(err)?;
    cert.set_version(2).map_err(err)?;
    cert.set_subject_name(&name).map_err(err)?;
    cert.set_issuer_name(&name).map_err(err)?;
    cert.set_pubkey(&key).map_err(err)?;
    let not_before = Asn1Time::days_from_now(0).map_err(err)?;
    cert.set_not_before(&not_before).map_err(err)?;
    let not_after = Asn1Time::days_from_now(30).map_err(err)?;
    cert.set_not_after(&not_after).map_err(err)?;
    cert.sign(&key, MessageDigest::null()).map_err(err)?;
    let cert = cert.build();

    let mut b = SslContextBuilder::new(SslMethod::tls_server()).map_err(err)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))
        .map_err(err)?;
    b.set_max_proto_version(Some(SslVersion::TLS1_3))
        .map_err(err)?;
    b.set_ciphersuites(if v == Variant::Aes {
        "TLS_AES_256_GCM_SHA384"
    } else {
        "TLS_CHACHA20_POLY1305_SHA256"
    })
    .map_err(err)?;
    b.set_groups_list("X25519:X448").map_err(err)?;
    b.set_options(
        SslOptions::NO_TICKET | SslOptions::NO_RENEGOTIATION | SslOptions::NO_COMPRESSION,
    );
    b.set_session_cache_mode(SslSessionCacheMode::OFF);
    if v != Variant::KeepBuffers {
        b.set_mode(SslMode::RELEASE_BUFFERS);
    }
    b.set_num_tickets(0).map_err(err)?;
    b.set_certificate(&cert).map_err(err)?;
    b.set_private_key(&key).map_err(err)?;
    if v == Variant::NoClientCert {
        b.set_verify(SslVerifyMode::NONE);
    } else {
        b.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    }
    Ok(Some(b.build()))
}

fn client_context() -> Result<SslContext, LoadError> {
    let mut b = SslContextBuilder::new(SslMethod::tls_client()).map_err(err)?;
    b.set_min_proto_version(Some(SslVersion::TLS1_3))
        .map_err(err)?;
    b.set_verify(SslVerifyMode::NONE);
    b.set_mode(SslMode::RELEASE_BUFFERS);
    Ok(b.build())
}

/// The server side: accepts forever on `listener`; each connection waits for one byte.
pub async fn serve(listener: TcpListener, v: Variant) -> Result<(), LoadError> {
    let ctx = server_context(v)?;
    loop {
        let (tcp, _) = listener.accept().await?;
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let mut byte = [0u8; 1];
            match ctx {
                None => {
                    let mut tcp = tcp;
                    let _ = tcp.read(&mut byte).await;
                }
                Some(ctx) => {
                    let Ok(ssl) = Ssl::new(&ctx) else { return };
                    let Ok(mut s) = tokio_openssl::SslStream::new(ssl, tcp) else {
                        return;
                    };
                    // Boxed so that the handshake's state does not stay in the task.
                    if Box::pin(std::pin::Pin::new(&mut s).accept()).await.is_err() {
                        return;
                    }
                    let _ = s.read(&mut byte).await;
                }
            }
        });
    }
}

/// Opens `n` connections (TLS unless `v` is `Tcp`) to `addr` and keeps them.
pub async fn open_clients(
    addr: std::net::SocketAddr,
    v: Variant,
    n: usize,
) -> Result<Vec<Box<dyn Send>>, LoadError> {
    let ctx = client_context()?;
    let mut out: Vec<Box<dyn Send>> = Vec::with_capacity(n);
    for _ in 0..n {
        let tcp = TcpStream::connect(addr).await?;
        if v == Variant::Tcp {
            out.push(Box::new(tcp));
            continue;
        }
        let ssl = Ssl::new(&ctx).map_err(err)?;
        let mut s = tokio_openssl::SslStream::new(ssl, tcp).map_err(err)?;
        tokio::time::timeout(
            Duration::from_secs(30),
            std::pin::Pin::new(&mut s).connect(),
        )
        .await
        .map_err(|_| LoadError::Timeout("TLS connect"))?
        .map_err(err)?;
        out.push(Box::new(s));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_variant_accepts_connections() {
        for v in [
            Variant::Tcp,
            Variant::Hush,
            Variant::NoClientCert,
            Variant::Aes,
            Variant::KeepBuffers,
        ] {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            let server = tokio::spawn(serve(l, v));
            let conns = open_clients(addr, v, 2).await.unwrap();
            assert_eq!(conns.len(), 2, "{v:?}");
            assert_eq!(server_context(v).unwrap().is_some(), v != Variant::Tcp);
            server.abort();
        }
    }
}
