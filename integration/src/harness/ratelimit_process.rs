//! Envoy's rate limit service (envoyproxy/ratelimit) for the global rate limit tests: the
//! shared instance that `tools/services.sh run` starts (found through `RATELIMIT_ADDR`), and
//! private instances a test starts and stops itself, on the same Redis and the limits in
//! `configs/ratelimit/`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::child::{scratch_dir, ChildProcess};
use super::{free_port, repo_root};
use crate::error::HarnessError;

/// `host:port` of the shared rate limit service's gRPC API.
pub const RATELIMIT_ADDR_ENV: &str = "RATELIMIT_ADDR";
/// The rate limit service binary (`tools/services.sh install` builds `target/tools/ratelimit`).
pub const RATELIMIT_BIN_ENV: &str = "RATELIMIT_BIN";
/// `host:port` of the Redis server the service keeps its counters in.
pub const RATELIMIT_REDIS_URL_ENV: &str = "RATELIMIT_REDIS_URL";
/// How long a private instance may take to load its limits.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the rate limit service and its Redis are, as `tools/services.sh run` says.
#[derive(Debug, Clone)]
pub struct RateLimitEnv {
    /// The shared service's gRPC address.
    pub addr: SocketAddr,
    /// The service binary, for private instances.
    pub bin: PathBuf,
    /// The Redis server's `host:port`.
    pub redis_url: String,
}

impl RateLimitEnv {
    /// Reads `RATELIMIT_ADDR`, `RATELIMIT_BIN` and `RATELIMIT_REDIS_URL`. When one is missing
    /// this panics in CI (`CI` set), where the tests must run, and elsewhere prints why the
    /// test is skipped and returns `None`.
    ///
    /// # Panics
    /// In CI without the variables, or when `RATELIMIT_ADDR` is not `ip:port`.
    pub fn from_env() -> Option<RateLimitEnv> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let (Some(addr), Some(bin), Some(redis_url)) = (
            var(RATELIMIT_ADDR_ENV),
            var(RATELIMIT_BIN_ENV),
            var(RATELIMIT_REDIS_URL_ENV),
        ) else {
            let why = format!(
                "{RATELIMIT_ADDR_ENV}, {RATELIMIT_BIN_ENV} and {RATELIMIT_REDIS_URL_ENV} must be \
                 set: these tests need Envoy's rate limit service and Redis; run them through \
                 `make test` or `tools/services.sh run -- cargo test ...`"
            );
            if std::env::var_os("CI").is_some() {
                panic!("{why}");
            }
            eprintln!("skipped: {why}");
            return None;
        };
        let addr = addr
            .parse()
            .unwrap_or_else(|_| panic!("{RATELIMIT_ADDR_ENV}={addr:?} is not ip:port"));
        Some(RateLimitEnv {
            addr,
            bin: PathBuf::from(bin),
            redis_url,
        })
    }
}

/// A private rate limit service process; killed when dropped.
#[derive(Debug)]
pub struct RateLimitProcess {
    proc: ChildProcess,
    grpc: SocketAddr,
}

impl RateLimitProcess {
    /// Starts `env.bin` on free loopback ports with the limits in `configs/ratelimit/` and
    /// `env.redis_url`, and waits until it reports healthy, which it does only once its
    /// limits are loaded.
    ///
    /// # Errors
    /// Missing binary, early exit, or not healthy within 30 s.
    pub fn start(env: &RateLimitEnv) -> Result<RateLimitProcess, HarnessError> {
        if !env.bin.is_file() {
            return Err(HarnessError::BinaryMissing {
                name: "ratelimit",
                tried: vec![env.bin.clone()],
                hint: "build it with `tools/services.sh install`",
            });
        }
        let port = |what: &'static str| {
            free_port().map_err(|source| HarnessError::Io {
                action: "finding a free port for",
                path: PathBuf::from(what),
                source,
            })
        };
        let grpc_port = port("the rate limit service's gRPC API")?;
        let http_port = port("the rate limit service's HTTP API")?;
        let debug_port = port("the rate limit service's debug API")?;
        let root = repo_root();
        let vars = [
            ("USE_STATSD", "false".to_owned()),
            ("LOG_LEVEL", "warn".to_owned()),
            ("REDIS_SOCKET_TYPE", "tcp".to_owned()),
            ("REDIS_URL", env.redis_url.clone()),
            ("RUNTIME_ROOT", root.join("configs").display().to_string()),
            ("RUNTIME_SUBDIRECTORY", "ratelimit".to_owned()),
            ("RUNTIME_WATCH_ROOT", "false".to_owned()),
            ("RUNTIME_IGNOREDOTFILES", "true".to_owned()),
            ("HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED", "true".to_owned()),
            ("HOST", "127.0.0.1".to_owned()),
            ("PORT", http_port.to_string()),
            ("GRPC_HOST", "127.0.0.1".to_owned()),
            ("GRPC_PORT", grpc_port.to_string()),
            ("DEBUG_HOST", "127.0.0.1".to_owned()),
            ("DEBUG_PORT", debug_port.to_string()),
        ];
        let vars: Vec<(String, String)> =
            vars.into_iter().map(|(k, v)| (k.to_owned(), v)).collect();
        let dir = scratch_dir("ratelimit")?;
        let mut proc = ChildProcess::spawn("ratelimit", &env.bin, &[], &root, dir, &vars)?;
        let http = SocketAddr::from(([127, 0, 0, 1], http_port));
        let until = Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = proc.try_status() {
                return Err(proc.exited_early(status));
            }
            if healthy(http) {
                return Ok(RateLimitProcess {
                    proc,
                    grpc: SocketAddr::from(([127, 0, 0, 1], grpc_port)),
                });
            }
            if Instant::now() >= until {
                return Err(HarnessError::NotReady {
                    name: "ratelimit",
                    after: READY_TIMEOUT,
                    pending: vec![http],
                    log: proc.log_path().to_path_buf(),
                    tail: proc.log_tail(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The gRPC address (`RateLimitService`).
    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc
    }

    /// Stops the service (SIGKILL) and reaps it: from now on its port refuses connections.
    pub fn stop(&mut self) {
        self.proc.kill();
    }

    /// Its log so far.
    pub fn log_contents(&self) -> String {
        self.proc.log_contents()
    }
}

/// Whether `GET /healthcheck` on `http` answers 200.
fn healthy(http: SocketAddr) -> bool {
    let probe = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect_timeout(&http, Duration::from_millis(200))?;
        s.set_read_timeout(Some(Duration::from_secs(1)))?;
        s.write_all(b"GET /healthcheck HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200")
    };
    probe().unwrap_or(false)
}
