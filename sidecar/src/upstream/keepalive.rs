//! The keepalive rule of one upstream connection (xprotocol spec,
//! `docs/xprotocol-proxy-and-bolt.md` §2.5) as a state machine over explicit instants, so the
//! connection's handler drives it from its own timer and tests drive it without sleeping:
//! a heartbeat whenever nothing was read for `idle`, and, with `interval` set, also every
//! `interval` regardless of traffic (so a silently dead upstream of a busy connection is found
//! too); a miss when its ack does not arrive within `timeout`, another probe right after a
//! miss, and a close after `max_failures` consecutive misses.

use tokio::time::Instant;

use crate::config::KeepaliveConfig;

/// What the handler must do when the keepalive timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// Nothing (traffic arrived meanwhile).
    Nothing,
    /// Send a heartbeat now and report it with [`Keepalive::sent`].
    Heartbeat,
    /// The ack of heartbeat `id` is due: check whether it came, report with
    /// [`Keepalive::checked`].
    Ack(u32),
}

/// Keepalive state of one connection.
#[derive(Debug)]
pub struct Keepalive {
    settings: KeepaliveConfig,
    /// Idleness is measured from the later of the last read and the last probe; the
    /// periodic heartbeat (`interval`) from the last probe alone.
    probed_at: Instant,
    /// After a miss: probe again right away rather than after another idle period.
    reprobe: bool,
    awaiting: Option<(u32, Instant)>,
    misses: u32,
    on: bool,
}

impl Keepalive {
    /// A connection opened at `now`.
    pub fn new(settings: KeepaliveConfig, now: Instant) -> Keepalive {
        Keepalive {
            settings: KeepaliveConfig {
                max_failures: settings.max_failures.max(1),
                ..settings
            },
            probed_at: now,
            reprobe: false,
            awaiting: None,
            misses: 0,
            on: true,
        }
    }

    /// False once turned off (the protocol has no heartbeat).
    pub fn is_on(&self) -> bool {
        self.on
    }

    /// Stops probing for good.
    pub fn turn_off(&mut self) {
        self.on = false;
    }

    /// When the timer should fire next, given the last read.
    pub fn wake(&self, last_read: Instant) -> Instant {
        match self.awaiting {
            Some((_, until)) => until,
            None if self.reprobe => self.probed_at,
            None => self.next_probe(last_read),
        }
    }

    /// When the next heartbeat is due: after `idle` without reads, or `interval` after the
    /// last probe, whichever comes first.
    fn next_probe(&self, last_read: Instant) -> Instant {
        let idle = last_read.max(self.probed_at) + self.settings.idle;
        match self.settings.interval {
            Some(interval) => idle.min(self.probed_at + interval),
            None => idle,
        }
    }

    /// The timer fired at `now`.
    pub fn due(&mut self, now: Instant, last_read: Instant) -> Due {
        if let Some((id, _)) = self.awaiting.take() {
            return Due::Ack(id);
        }
        if self.reprobe || self.next_probe(last_read) <= now {
            self.probed_at = now;
            self.reprobe = false;
            return Due::Heartbeat;
        }
        Due::Nothing
    }

    /// Heartbeat `id` went out at `now`.
    pub fn sent(&mut self, id: u32, now: Instant) {
        self.awaiting = Some((id, now + self.settings.timeout));
    }

    /// The ack check's result; true when the connection must be closed (too many misses).
    pub fn checked(&mut self, missed: bool) -> bool {
        if !missed {
            self.misses = 0;
            return false;
        }
        self.misses += 1;
        self.reprobe = true;
        self.misses >= self.settings.max_failures
    }

    /// Consecutive misses so far.
    pub fn misses(&self) -> u32 {
        self.misses
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(max_failures: u32) -> KeepaliveConfig {
        KeepaliveConfig {
            interval: None,
            timeout: Duration::from_secs(1),
            idle: Duration::from_secs(10),
            max_failures,
        }
    }

    fn periodic(interval: Duration, max_failures: u32) -> KeepaliveConfig {
        KeepaliveConfig {
            interval: Some(interval),
            timeout: Duration::from_secs(1),
            idle: Duration::from_secs(10),
            max_failures,
        }
    }

    #[test]
    fn an_idle_connection_is_probed_and_traffic_postpones_the_probe() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(settings(3), t0);
        assert_eq!(k.wake(t0), t0 + Duration::from_secs(10));
        // Read at t0+5: the timer set for t0+10 finds no idleness.
        let read = t0 + Duration::from_secs(5);
        assert_eq!(k.due(t0 + Duration::from_secs(10), read), Due::Nothing);
        assert_eq!(k.wake(read), read + Duration::from_secs(10));
        let idle_until = read + Duration::from_secs(10);
        assert_eq!(k.due(idle_until, read), Due::Heartbeat);
        k.sent(7, idle_until);
        assert_eq!(k.wake(read), idle_until + Duration::from_secs(1));
        assert_eq!(
            k.due(idle_until + Duration::from_secs(1), read),
            Due::Ack(7)
        );
        assert!(!k.checked(false));
        assert_eq!(k.misses(), 0);
    }

    #[test]
    fn misses_probe_again_at_once_and_close_after_max_failures() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(settings(2), t0);
        let t = t0 + Duration::from_secs(10);
        assert_eq!(k.due(t, t0), Due::Heartbeat);
        k.sent(1, t);
        assert_eq!(k.due(t + Duration::from_secs(1), t0), Due::Ack(1));
        assert!(!k.checked(true), "one miss of two");
        // Probe again right away, even though a read just happened.
        let now = t + Duration::from_secs(1);
        assert!(k.wake(now) <= now);
        assert_eq!(k.due(now, now), Due::Heartbeat);
        k.sent(2, now);
        assert_eq!(k.due(now + Duration::from_secs(1), now), Due::Ack(2));
        assert!(k.checked(true), "second consecutive miss closes");
    }

    #[test]
    fn an_ack_resets_the_miss_count() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(settings(2), t0);
        assert!(!k.checked(true));
        assert!(!k.checked(false));
        assert!(!k.checked(true), "the count restarted");
        assert!(Keepalive::new(settings(0), t0).checked(true), "0 means 1");
    }

    #[test]
    fn an_interval_probes_a_busy_connection_on_schedule() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(periodic(Duration::from_secs(2), 3), t0);
        let second = Duration::from_secs(1);
        // Reads every 500 ms never leave the connection idle for 10 s, yet the heartbeat
        // goes out every 2 s.
        let mut now = t0;
        let mut heartbeats = Vec::new();
        for step in 1..=16u32 {
            now = t0 + Duration::from_millis(500) * step;
            let last_read = now;
            while k.wake(last_read) <= now {
                match k.due(now, last_read) {
                    Due::Heartbeat => {
                        heartbeats.push(now - t0);
                        k.sent(step, now);
                    }
                    Due::Ack(_) => assert!(!k.checked(false), "acknowledged"),
                    Due::Nothing => break,
                }
            }
        }
        assert_eq!(now - t0, 8 * second);
        assert_eq!(
            heartbeats,
            vec![2 * second, 4 * second, 6 * second, 8 * second]
        );
    }

    #[test]
    fn an_interval_counts_misses_on_a_busy_connection_and_closes() {
        let t0 = Instant::now();
        let mut k = Keepalive::new(periodic(Duration::from_secs(2), 2), t0);
        let t = t0 + Duration::from_secs(2);
        // Traffic right now does not postpone the periodic probe.
        assert_eq!(k.wake(t), t);
        assert_eq!(k.due(t, t), Due::Heartbeat);
        k.sent(1, t);
        let t = t + Duration::from_secs(1);
        assert_eq!(k.due(t, t), Due::Ack(1));
        assert!(!k.checked(true), "first miss");
        assert_eq!(k.due(t, t), Due::Heartbeat, "probe again at once");
        k.sent(2, t);
        let t = t + Duration::from_secs(1);
        assert_eq!(k.due(t, t), Due::Ack(2));
        assert!(k.checked(true), "second consecutive miss closes");
        assert_eq!(k.misses(), 2);
    }

    #[test]
    fn the_earlier_of_idle_and_interval_wins() {
        let t0 = Instant::now();
        let k = Keepalive::new(periodic(Duration::from_secs(30), 1), t0);
        assert_eq!(k.wake(t0), t0 + Duration::from_secs(10), "idle first");
        let k = Keepalive::new(periodic(Duration::from_secs(3), 1), t0);
        assert_eq!(k.wake(t0), t0 + Duration::from_secs(3), "interval first");
    }
}
