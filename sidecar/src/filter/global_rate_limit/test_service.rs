//! Finding the real rate limit service in tests (`tools/services.sh run` sets
//! `RATELIMIT_ADDR`; `make test` runs every test that way).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The variable naming the rate limit service's gRPC `host:port`.
pub(crate) const RATELIMIT_ADDR_ENV: &str = "RATELIMIT_ADDR";

/// The service's address. Without it, a test fails in CI (`CI` set) and is skipped, with the
/// reason printed, elsewhere.
pub(crate) fn rate_limit_service() -> Option<String> {
    match std::env::var(RATELIMIT_ADDR_ENV) {
        Ok(addr) if !addr.is_empty() => Some(addr),
        _ if std::env::var_os("CI").is_some() => panic!(
            "{RATELIMIT_ADDR_ENV} is not set: the rate limit tests need Envoy's rate limit \
             service; run them through `make test` or `tools/services.sh run -- cargo test`"
        ),
        _ => {
            eprintln!(
                "skipped: {RATELIMIT_ADDR_ENV} is not set (start the rate limit service with \
                 `tools/services.sh run -- cargo test`)"
            );
            None
        }
    }
}

/// `prefix` plus a suffix no other test (or earlier run) used, so each test counts against a
/// budget of its own in the shared service.
pub(crate) fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}
