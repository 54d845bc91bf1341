//! Host selection algorithms over one worker's view of a cluster: weighted random, smooth
//! weighted round robin, and power-of-two-choices least request. All skip unhealthy hosts.

use std::cell::Cell;

use fastrand::Rng;

/// What an algorithm sees of the hosts.
pub(crate) struct HostView<'a> {
    /// Weights, 1..=128, one per host.
    pub(crate) weights: &'a [u32],
    /// Health of host `i`.
    pub(crate) healthy: &'a dyn Fn(usize) -> bool,
    /// This worker's active requests per host.
    pub(crate) active: &'a [Cell<u32>],
}

impl HostView<'_> {
    fn len(&self) -> usize {
        self.weights.len()
    }

    /// Index of the `k`-th healthy host.
    fn nth_healthy(&self, k: usize) -> Option<usize> {
        (0..self.len()).filter(|&i| (self.healthy)(i)).nth(k)
    }
}

/// Algorithm state, one per worker and cluster.
#[derive(Debug)]
pub(crate) enum Algorithm {
    /// Weighted random.
    Random,
    /// Smooth weighted round robin (nginx): each pick adds every healthy host's weight to
    /// its current score, takes the highest, and subtracts the total from it.
    RoundRobin {
        /// Current scores.
        current: Vec<i64>,
    },
    /// Power of two choices by active requests; weighted as weight / (active + 1) when
    /// weights differ.
    LeastRequest {
        /// All weights equal: compare active counts only.
        equal_weights: bool,
    },
}

impl Algorithm {
    /// Smooth weighted round robin, advanced by a random number of picks (less than the
    /// total weight) so workers and restarts do not all start on the same host.
    pub(crate) fn round_robin(weights: &[u32], rng: &mut Rng) -> Algorithm {
        let mut alg = Algorithm::RoundRobin {
            current: vec![0; weights.len()],
        };
        let total: u64 = weights.iter().map(|&w| u64::from(w)).sum();
        if total > 0 {
            let all_healthy = |_: usize| true;
            let view = HostView {
                weights,
                healthy: &all_healthy,
                active: &[],
            };
            for _ in 0..rng.u64(0..total) {
                alg.pick(&view, rng);
            }
        }
        alg
    }

    /// Least request for these weights.
    pub(crate) fn least_request(weights: &[u32]) -> Algorithm {
        Algorithm::LeastRequest {
            equal_weights: weights.windows(2).all(|w| w[0] == w[1]),
        }
    }

    /// Picks a healthy host; `None` when there is none.
    pub(crate) fn pick(&mut self, hosts: &HostView<'_>, rng: &mut Rng) -> Option<usize> {
        match self {
            Algorithm::Random => pick_random(hosts, rng),
            Algorithm::RoundRobin { current } => pick_round_robin(current, hosts),
            Algorithm::LeastRequest { equal_weights } => {
                pick_least_request(*equal_weights, hosts, rng)
            }
        }
    }
}

fn pick_random(hosts: &HostView<'_>, rng: &mut Rng) -> Option<usize> {
    let total: u64 = (0..hosts.len())
        .filter(|&i| (hosts.healthy)(i))
        .map(|i| u64::from(hosts.weights[i]))
        .sum();
    if total == 0 {
        return None;
    }
    let mut draw = rng.u64(0..total);
    for i in (0..hosts.len()).filter(|&i| (hosts.healthy)(i)) {
        let w = u64::from(hosts.weights[i]);
        if draw < w {
            return Some(i);
        }
        draw -= w;
    }
    None
}

fn pick_round_robin(current: &mut [i64], hosts: &HostView<'_>) -> Option<usize> {
    let mut total: i64 = 0;
    let mut best: Option<usize> = None;
    for i in 0..current.len() {
        if !(hosts.healthy)(i) {
            continue;
        }
        let w = i64::from(hosts.weights[i]);
        current[i] += w;
        total += w;
        // Ties go to the lowest index.
        if best.is_none_or(|b| current[i] > current[b]) {
            best = Some(i);
        }
    }
    let best = best?;
    current[best] -= total;
    Some(best)
}

fn pick_least_request(equal_weights: bool, hosts: &HostView<'_>, rng: &mut Rng) -> Option<usize> {
    let healthy = (0..hosts.len()).filter(|&i| (hosts.healthy)(i)).count();
    match healthy {
        0 => None,
        1 => hosts.nth_healthy(0),
        n => {
            let k1 = rng.usize(0..n);
            let mut k2 = rng.usize(0..n - 1);
            if k2 >= k1 {
                k2 += 1;
            }
            let a = hosts.nth_healthy(k1)?;
            let b = hosts.nth_healthy(k2)?;
            let active = |i: usize| u64::from(hosts.active.get(i).map_or(0, Cell::get));
            let a_better = if equal_weights {
                active(a) <= active(b)
            } else {
                // weight_a / (active_a + 1) >= weight_b / (active_b + 1)
                u64::from(hosts.weights[a]) * (active(b) + 1)
                    >= u64::from(hosts.weights[b]) * (active(a) + 1)
            };
            Some(if a_better { a } else { b })
        }
    }
}
