//! `quell new` and `quell build`: a runbook from a template, and its component built where it
//! lives (Rust with cargo for `wasm32-wasip2`, Python with componentize-py), put beside its
//! `policy.toml` so `quell run` uses what was just built.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};
use clap::ValueEnum;

/// A runbook's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    /// A Rust crate (`cdylib`) with the Rust SDK.
    Rust,
    /// A Python class with the Python SDK, built by componentize-py.
    Python,
}

const POLICY: &str = include_str!("templates/policy.toml");
const ALERT: &str = include_str!("templates/alert.json");
const RUST_CARGO: &str = include_str!("templates/rust/Cargo.toml");
const RUST_LIB: &str = include_str!("templates/rust/lib.rs");
const PYTHON_APP: &str = include_str!("templates/python/app.py");
const PYTHON_TEST: &str = include_str!("templates/python/test_app.py");
const PYTHON_CONFTEST: &str = include_str!("templates/python/conftest.py");

/// Where the SDKs are: `given`, else the `runbook-sdk/` of a Quell checkout found by walking up
/// from `start`, then from the current directory.
fn sdk_root(start: &Path, given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(sdk) = given {
        let sdk = sdk
            .canonicalize()
            .with_context(|| format!("--sdk {}", sdk.display()))?;
        if !sdk.join("wit/runbook.wit").is_file() {
            bail!(
                "--sdk {}: no wit/runbook.wit there (give the runbook-sdk directory)",
                sdk.display()
            );
        }
        return Ok(sdk);
    }
    // Absolute, whether or not `start` exists yet: the path is written into the runbook.
    let start = std::path::absolute(start).unwrap_or_else(|_| start.to_owned());
    let here = std::env::current_dir().unwrap_or_default();
    start
        .ancestors()
        .chain(here.ancestors())
        .map(|dir| dir.join("runbook-sdk"))
        .find(|sdk| sdk.join("wit/runbook.wit").is_file())
        .map(|sdk| sdk.canonicalize().unwrap_or(sdk))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no runbook-sdk/ above {} or the current directory: run this inside a Quell checkout, or give --sdk <path to runbook-sdk>",
                start.display()
            )
        })
}

/// `replica-mismatch` → `ReplicaMismatch`.
fn camel(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|part| !part.is_empty())
        .map(|part| {
            let mut chars = part.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_uppercase().chain(chars).collect()
            })
        })
        .collect()
}

/// A runbook name: lowercase letters, digits and dashes, starting with a letter.
fn check_name(name: &str) -> anyhow::Result<()> {
    let ok = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !ok {
        bail!(
            "{name:?} is not a runbook name: lowercase letters, digits and dashes, starting with a letter (e.g. replica-mismatch)"
        );
    }
    Ok(())
}

/// `quell new`: creates `<dir>/<name>/` with the runbook, a unit test, a policy that grants
/// nothing yet and an example alert. Returns the runbook's directory.
pub fn new(
    name: &str,
    lang: Lang,
    dir: &Path,
    alertname: Option<&str>,
    sdk: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    check_name(name)?;
    let target = dir.join(name);
    if target.exists() {
        bail!(
            "{} already exists: pick another name or remove it",
            target.display()
        );
    }
    let sdk = sdk_root(dir, sdk)?;
    let alertname = alertname.map_or_else(|| camel(name), str::to_owned);
    if alertname.is_empty() || alertname.contains(['"', '\\', '\n']) {
        bail!("--alertname {alertname:?}: quotes, backslashes and newlines cannot be used");
    }
    let crate_file = name.replace('-', "_");
    let fill = |template: &str| {
        template
            .replace("{{name}}", name)
            .replace("{{class}}", &camel(name))
            .replace("{{alertname}}", &alertname)
            .replace("{{dir}}", &target.display().to_string())
            .replace("{{sdk}}", &sdk.display().to_string())
            .replace(
                "{{sdk_python}}",
                &format!("{:?}", sdk.join("python").display().to_string()),
            )
            .replace("{{component}}", &format!("{crate_file}.wasm"))
            // CPython starts with about 12 MiB of linear memory.
            .replace(
                "{{memory}}",
                if lang == Lang::Python {
                    "64MiB"
                } else {
                    "32MiB"
                },
            )
    };
    let mut files: Vec<(PathBuf, String)> = vec![
        (target.join("policy.toml"), fill(POLICY)),
        (target.join("alert.json"), fill(ALERT)),
    ];
    match lang {
        Lang::Rust => {
            files.push((target.join("Cargo.toml"), fill(RUST_CARGO)));
            files.push((target.join("src/lib.rs"), fill(RUST_LIB)));
        }
        Lang::Python => {
            files.push((target.join("app.py"), fill(PYTHON_APP)));
            files.push((target.join("test_app.py"), fill(PYTHON_TEST)));
            files.push((target.join("conftest.py"), fill(PYTHON_CONFTEST)));
        }
    }
    for (path, text) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(target)
}

/// `quell build`: builds the runbook in `dir` and puts its component beside its policy.
/// Returns the component's path.
pub fn build(dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{}: no such runbook directory", dir.display()))?;
    if dir.join("app.py").is_file() {
        build_python(&dir, sdk)
    } else if dir.join("Cargo.toml").is_file() {
        build_rust(&dir)
    } else {
        bail!(
            "{}: neither app.py (Python) nor Cargo.toml (Rust) is there",
            dir.display()
        )
    }
}

fn component_name(dir: &Path) -> String {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!("{}.wasm", name.replace('-', "_"))
}

// The build tools run as the author's own commands, with their environment and terminal: the
// spawn rule (clippy.toml) is for what runbooks make the host run, which this is not.
#[allow(clippy::disallowed_methods)]
fn build_python(dir: &Path, sdk: Option<&Path>) -> anyhow::Result<PathBuf> {
    let sdk = sdk_root(dir, sdk)?;
    let venv = sdk
        .parent()
        .unwrap_or(&sdk)
        .join(".quell/venv-python/bin/componentize-py");
    let componentize = if venv.is_file() {
        venv
    } else {
        PathBuf::from("componentize-py")
    };
    let out = dir.join(component_name(dir));
    // componentize-py output is not reproducible: building again what did not change would
    // change the sha256 a policy may pin. Built when a source is newer than the component.
    if up_to_date(&out, &[dir, &sdk.join("python"), &sdk.join("wit")]) {
        return Ok(out);
    }
    let partial = out.with_extension("wasm.tmp");
    let status = Command::new(&componentize)
        .arg("-d")
        .arg(sdk.join("wit"))
        .args(["-w", "runbook", "componentize", "app", "-p"])
        .arg(dir)
        .arg("-p")
        .arg(sdk.join("python"))
        .arg("-o")
        .arg(&partial)
        .status()
        .with_context(|| {
            format!(
                "cannot run {}: install componentize-py (scripts/setup.sh makes .quell/venv-python)",
                componentize.display()
            )
        })?;
    if !status.success() {
        let _ = std::fs::remove_file(&partial);
        bail!("componentize-py failed for {} ({status})", dir.display());
    }
    std::fs::rename(&partial, &out)
        .with_context(|| format!("cannot move {} into place", partial.display()))?;
    Ok(out)
}

/// Whether `out` exists and no `.py` or `.wit` file under `sources` is newer.
fn up_to_date(out: &Path, sources: &[&Path]) -> bool {
    fn newest(dir: &Path) -> Option<std::time::SystemTime> {
        let mut newest = None;
        for entry in std::fs::read_dir(dir).ok()?.flatten() {
            let path = entry.path();
            let when = if path.is_dir() {
                newest_in(&path)
            } else if path.extension().is_some_and(|e| e == "py" || e == "wit") {
                entry.metadata().ok()?.modified().ok()
            } else {
                None
            };
            newest = newest.max(when);
        }
        newest
    }
    fn newest_in(dir: &Path) -> Option<std::time::SystemTime> {
        // Bytecode caches and build outputs are not sources.
        let skip = dir
            .file_name()
            .is_some_and(|n| n == "__pycache__" || n == "target" || n == ".pytest_cache");
        if skip { None } else { newest(dir) }
    }
    let Some(built) = std::fs::metadata(out).and_then(|m| m.modified()).ok() else {
        return false;
    };
    sources
        .iter()
        .filter_map(|dir| newest_in(dir))
        .all(|source| source <= built)
}

#[allow(clippy::disallowed_methods)] // as build_python
fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .args([
            "build",
            "--profile",
            "wasm",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg(dir.join("Cargo.toml"))
        .status()
        .context("cannot run cargo")?;
    if !status.success() {
        bail!("cargo build failed for {} ({status})", dir.display());
    }
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| dir.join("target"), PathBuf::from);
    let name = component_name(dir);
    let built = target.join("wasm32-wasip2/wasm").join(&name);
    let out = dir.join(&name);
    std::fs::copy(&built, &out)
        .with_context(|| format!("cannot copy {} to {}", built.display(), out.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_classes_and_bad_names_say_why() {
        assert_eq!(camel("replica-mismatch"), "ReplicaMismatch");
        assert_eq!(camel("disk2-full"), "Disk2Full");
        for bad in ["Replica", "1st", "a b", "a/b", "-x", ""] {
            let error = check_name(bad).unwrap_err().to_string();
            assert!(error.contains("is not a runbook name"), "{bad}: {error}");
        }
    }
}
