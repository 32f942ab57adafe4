//! PostgreSQL for ntf-server tests: the test database, a schema per test (dropped with its
//! guard) and a plain client. Tests fail, never skip, when PostgreSQL is down.

#![allow(dead_code)]

pub const PG_URL: &str = "postgresql://postgres@127.0.0.1:5432/test";

/// A PostgreSQL schema for one test, dropped when this is dropped.
pub struct PgSchema(pub String);

impl PgSchema {
    /// `ntf_t_<tag>_<pid>_<random>`.
    pub fn new(tag: &str) -> PgSchema {
        let n = hush_crypto::random_nonce();
        let n = u32::from_be_bytes([n[0], n[1], n[2], n[3]]);
        PgSchema(format!("ntf_t_{tag}_{}_{n:08x}", std::process::id()))
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let schema = self.0.clone();
        // Its own thread and runtime: Drop may run inside a test's runtime.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                if let Ok((c, conn)) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls).await
                {
                    tokio::spawn(conn);
                    let _ = c
                        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                        .await;
                }
            });
        })
        .join();
    }
}

/// A client of the test database (its connection task spawned).
pub async fn pg() -> tokio_postgres::Client {
    let (c, conn) = tokio_postgres::connect(PG_URL, tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running at 127.0.0.1:5432 (this test does not skip)");
    tokio::spawn(conn);
    c
}
