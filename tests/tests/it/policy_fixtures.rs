//! Every rejected policy has a fixture beside the exact message Quell prints for it.
//! `QUELL_BLESS=1` writes the messages; review the diff before committing it.

use std::path::Path;

use quell::policy::Policy;

#[test]
fn every_bad_policy_is_rejected_with_its_exact_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/policies");
    let mut checked = 0;
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for path in entries
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
    {
        let message = match Policy::load(&path) {
            Ok(_) => panic!("{} was accepted", path.display()),
            Err(e) => e.message,
        };
        let expected_path = path.with_extension("expected");
        if std::env::var_os("QUELL_BLESS").is_some() {
            std::fs::write(&expected_path, format!("{message}\n")).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path)
            .unwrap_or_else(|_| panic!("{} has no .expected file", path.display()));
        assert_eq!(message, expected.trim_end(), "{}", path.display());
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} fixtures");
}
