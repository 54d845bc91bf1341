//! The `sidecar` binary's `check`, `version` and `--help`, and its exit code for broken
//! configs (64, EX_USAGE).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sidecar(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sidecar"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("run sidecar")
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("sidecar-cli-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn check_prints_a_summary_of_the_native_config() {
    let out = sidecar(
        &["check", "-c", "configs/mosn_rpc_config_native.json"],
        &repo_root(),
    );
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    for needle in [
        "clientListener 127.0.0.1:2045 protocol x-bolt (native bolt)",
        "serverListener 127.0.0.1:2046",
        "serverCluster SIMPLE LB_RANDOM",
        "warnings (1):",
        "healthcheck",
        "config OK",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn check_accepts_the_long_config_flag_and_resolves_plugins_from_the_cwd() {
    let dir = Scratch::new("wasm");
    let plugin = dir.0.join("target/wasm32-wasip1/plugin/bolt.wasm");
    std::fs::create_dir_all(plugin.parent().expect("parent")).expect("mkdir");
    // check loads and starts the plugin as start does: a copy of the real one (built by
    // `make plugins`, which `make test` runs first).
    let built = repo_root().join("target/wasm32-wasip1/plugin/bolt.wasm");
    std::fs::copy(&built, &plugin).expect("copy the built bolt.wasm (run `make plugins`)");
    let config = repo_root().join("configs/mosn_rpc_config_wasm.json");
    let config = config.to_str().expect("utf-8 path");
    let out = sidecar(&["check", "--config", config], &dir.0);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("wasm plugin wasm-bolt, root_id 1"),
        "{stdout}"
    );

    // The same config from a directory without the plugin is a config error.
    let empty = Scratch::new("empty");
    let out = sidecar(&["check", "-c", config], &empty.0);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("wasm_global_plugins[0].vm_config.path"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn broken_configs_exit_64_naming_the_field() {
    let dir = Scratch::new("broken");
    let native = std::fs::read_to_string(repo_root().join("configs/mosn_rpc_config_native.json"))
        .expect("read native config");
    let broken = native.replacen(
        "\"cluster_name\": \"serverCluster\"",
        "\"cluster_name\": \"nope\"",
        1,
    );
    assert_ne!(broken, native);
    std::fs::write(dir.0.join("broken.json"), broken).expect("write");
    for command in ["check", "start"] {
        let out = sidecar(&[command, "-c", "broken.json"], &dir.0);
        assert_eq!(out.status.code(), Some(64), "{command}");
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains(
                "servers[0].routers[0].virtual_hosts[0].routers[0].route.cluster_name: unknown cluster \"nope\""
            ),
            "{command}: {stderr}"
        );
    }

    std::fs::write(dir.0.join("syntax.json"), "{\n  \"servers\": [,]\n}").expect("write");
    let out = sidecar(&["check", "-c", "syntax.json"], &dir.0);
    assert_eq!(out.status.code(), Some(64));
    assert!(
        text(&out.stderr).contains("line 2, column"),
        "{}",
        text(&out.stderr)
    );

    let out = sidecar(&["check", "-c", "missing.json"], &dir.0);
    assert_eq!(out.status.code(), Some(64));
    assert!(text(&out.stderr).contains("cannot read config file"));
}

#[test]
fn version_and_help() {
    let out = sidecar(&["version"], &repo_root());
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("sidecar {}", env!("CARGO_PKG_VERSION"))
    );

    let out = sidecar(&["--help"], &repo_root());
    assert!(out.status.success());
    let help = text(&out.stdout);
    for word in ["start", "check", "version", "--log-level"] {
        assert!(help.contains(word), "{help}");
    }
}

#[test]
fn bad_log_level_flag_is_a_usage_error() {
    let out = sidecar(
        &[
            "--log-level",
            "LOUD",
            "check",
            "-c",
            "configs/mosn_rpc_config_native.json",
        ],
        &repo_root(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("unknown log level"),
        "{}",
        text(&out.stderr)
    );
}
