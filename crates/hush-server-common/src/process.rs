//! Process plumbing shared by the servers' `main`s: logging setup and waiting for a stop signal.

/// Installs the global `tracing` subscriber writing to stderr, filtered by the environment variable
/// `env_var` (e.g. `RUST_LOG`) if it is set and valid, else by `default_level` (e.g. `"info"`).
///
/// Errors when `default_level` is needed and is not a valid filter.
pub fn init_logging(
    env_var: &str,
    default_level: &str,
) -> Result<(), tracing_subscriber::filter::ParseError> {
    let filter = tracing_subscriber::EnvFilter::try_from_env(env_var)
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(default_level))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}

/// Resolves on ctrl-c, or on SIGTERM on unix (ctrl-c only if the SIGTERM handler cannot be set up).
pub async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_default_level_is_an_error() {
        // The variable is never set, so the default is used and must parse.
        assert!(init_logging("HUSH_SERVER_COMMON_TEST_UNSET_LOG", "info=[").is_err());
    }
}
