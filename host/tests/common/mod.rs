//! What the tests that run the `quell` binary share.

#![allow(dead_code)] // each test file uses what it needs

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The repository's root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Runs the `quell` binary from the repository's root.
pub fn quell(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_quell"))
        .args(args)
        .current_dir(workspace())
        .output()
        .unwrap()
}

/// Bytes as text, invalid UTF-8 replaced.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs a future to its end on a runtime of its own (for plain `#[test]`s).
pub fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// GET `url`: its body as JSON (or as a JSON string when it is not JSON), `None` unless 2xx.
pub fn get(url: &str) -> Option<Value> {
    block(async {
        let response = reqwest::get(url).await.ok()?;
        response.status().is_success().then_some(())?;
        let body = response.text().await.ok()?;
        Some(serde_json::from_str(&body).unwrap_or(Value::String(body)))
    })
}

/// The probe runbook's policy in mode auto, each capability granted a little (the probe
/// imports them all): remediations that make HTTP calls to loopback servers.
pub fn auto_probe_policy() -> String {
    format!(
        "[runbook]\nname = \"probe\"\ncomponent = {:?}\nmode = \"auto\"\ntimeout = \"5m\"\n\
         [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"x\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\ntouch = {{ run = \"true\", effect = \"write\" }}\n\
         [http]\nnetworks = [\"127.0.0.0/8\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n",
        quell_tests::probe_component().display().to_string()
    )
}
