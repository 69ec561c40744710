//! The store boundary holds: the database crate is used only under `host/src/store/`, and
//! the modules stay small enough to read.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn host_sources() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    assert!(files.len() > 20, "found only {files:?}");
    (src, files)
}

#[test]
fn the_database_crate_is_used_only_inside_the_store() {
    let (src, files) = host_sources();
    let store = src.join("store");
    let outside: Vec<String> = files
        .iter()
        .filter(|path| !path.starts_with(&store) && *path != &src.join("store.rs"))
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            ["rusqlite", "tokio_postgres", "deadpool"]
                .iter()
                .any(|driver| text.contains(driver))
        })
        .map(|path| path.strip_prefix(&src).unwrap().display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "a database driver is used outside host/src/store: {outside:?}; add a named \
         operation to the store instead"
    );
}

#[test]
fn no_module_is_too_long_to_read() {
    let (src, files) = host_sources();
    let pipeline = src.join("pipeline");
    assert!(
        !src.join("pipeline.rs").exists() && pipeline.is_dir(),
        "the pipeline is a directory of modules"
    );
    let long: Vec<String> = files
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).unwrap().lines().count();
            let limit = if path.starts_with(&pipeline) {
                450
            } else {
                600
            };
            (lines > limit).then(|| {
                format!(
                    "{} has {lines} lines (limit {limit})",
                    path.strip_prefix(&src).unwrap().display()
                )
            })
        })
        .collect();
    assert!(long.is_empty(), "{long:#?}");
}
