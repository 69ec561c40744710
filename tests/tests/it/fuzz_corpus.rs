//! The fuzz targets on stable: every committed corpus file (`tests/fuzz/corpus/<target>/`)
//! through its harness in `quell_tests::fuzz`, then a short seeded mutation run, so a broken
//! property shows in CI without nightly or libFuzzer. `cargo fuzz run` explores far more; see
//! docs/fuzzing.md.

use std::path::PathBuf;
use std::time::Instant;

use quell_tests::fuzz::{Mutator, TARGETS};

/// Mutants per target: a few thousand, well under a second each in a debug build.
const MUTANTS: usize = 5000;
/// libFuzzer's default `-max_len` for these corpora.
const MAX_LEN: usize = 4096;

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).unwrap();
            (path, data)
        })
        .collect()
}

/// Runs one input, naming it (and, for a mutant, its bytes) when a property breaks.
fn run(target: &str, harness: fn(&[u8]), what: &str, data: &[u8]) {
    let outcome = std::panic::catch_unwind(|| harness(data));
    if let Err(panic) = outcome {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        panic!(
            "fuzz target {target}: {what} breaks a property: {message}\ninput: {:?}",
            String::from_utf8_lossy(data)
        );
    }
}

#[test]
fn every_fuzz_target_holds_on_its_corpus_and_seeded_mutants() {
    for (index, target) in TARGETS.iter().enumerate() {
        let started = Instant::now();
        let files = corpus(target.name);
        assert!(
            !files.is_empty(),
            "tests/fuzz/corpus/{} is empty",
            target.name
        );
        for (path, data) in &files {
            run(target.name, target.run, &path.display().to_string(), data);
        }
        // Mutate the hand-made seeds, not the tiny `grown-*` files libFuzzer's merge kept.
        let count = files.len();
        let seeds: Vec<Vec<u8>> = files
            .into_iter()
            .filter(|(path, _)| {
                !path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("grown-")
            })
            .map(|(_, data)| data)
            .collect();
        let mut mutator = Mutator::new(0x5155_454c_4c00 + index as u64);
        for n in 0..MUTANTS {
            let mutant = mutator.mutate(&seeds, MAX_LEN);
            run(target.name, target.run, &format!("mutant #{n}"), &mutant);
        }
        eprintln!(
            "fuzz_corpus: {}: {} corpus files and {MUTANTS} mutants in {:.2?}",
            target.name,
            count,
            started.elapsed()
        );
    }
}
