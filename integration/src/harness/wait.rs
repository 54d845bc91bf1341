//! Waiting for a condition the test cannot be told about directly (a counter, a log line, an
//! fd count): probe, and look again after a short pause, bounded by a generous deadline so a
//! test fails with the last value instead of hanging. Tests bound their assertions by what
//! the probe returns, never by how quickly it came.

use std::time::Duration;

/// Pause between two probes.
const PROBE_EVERY: Duration = Duration::from_millis(20);

/// Probes until `done` holds for what `probe` returns, or `within` passed; the last value.
pub async fn eventually<T>(
    within: Duration,
    mut probe: impl AsyncFnMut() -> T,
    done: impl Fn(&T) -> bool,
) -> T {
    let start = tokio::time::Instant::now();
    loop {
        let v = probe().await;
        if done(&v) || start.elapsed() > within {
            return v;
        }
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn returns_the_first_value_that_is_done_or_the_last_one() {
        let mut n = 0;
        let v = eventually(
            Duration::from_secs(5),
            async || {
                n += 1;
                n
            },
            |v| *v == 3,
        )
        .await;
        assert_eq!(v, 3);
        let never = eventually(Duration::from_millis(50), async || 7, |_| false).await;
        assert_eq!(never, 7);
    }
}
