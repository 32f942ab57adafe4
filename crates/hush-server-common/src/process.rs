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

/// The stop signals (SIGINT/ctrl-c and SIGTERM), registered when this is created: a signal that
/// arrives any time after [`StopSignals::install`] is seen by [`StopSignals::recv`], even before the
/// first poll (tokio's `ctrl_c()` future registers only when first polled, so a SIGTERM right after
/// start-up would otherwise kill the process with the default action).
pub struct StopSignals {
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Registers the handlers now (needs a tokio runtime).
    pub fn install() -> std::io::Result<StopSignals> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                int: signal(SignalKind::interrupt())?,
                term: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        {
            Ok(StopSignals {})
        }
    }

    /// Resolves on the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.int.recv() => {}
                _ = self.term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Resolves on ctrl-c or SIGTERM (handlers registered at the first poll; use [`StopSignals`] to
/// register them earlier).
pub async fn wait_for_signal() {
    match StopSignals::install() {
        Ok(mut s) => s.recv().await,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
#[allow(unsafe_code)] // raise(3) in a test, SAFETY below
mod tests {
    use super::*;

    #[cfg(unix)]
    #[tokio::test]
    async fn sigterm_before_the_first_poll_is_seen() {
        let mut stop = StopSignals::install().unwrap();
        // SAFETY: raise has no preconditions; the handler is registered above.
        assert_eq!(unsafe { libc_raise_term() }, 0);
        tokio::time::timeout(std::time::Duration::from_secs(5), stop.recv())
            .await
            .expect("SIGTERM seen");
    }

    #[cfg(unix)]
    unsafe fn libc_raise_term() -> i32 {
        unsafe extern "C" {
            fn raise(sig: i32) -> i32;
        }
        const SIGTERM: i32 = 15;
        unsafe { raise(SIGTERM) }
    }

    #[test]
    fn invalid_default_level_is_an_error() {
        // The variable is never set, so the default is used and must parse.
        assert!(init_logging("HUSH_SERVER_COMMON_TEST_UNSET_LOG", "info=[").is_err());
    }
}
