//! Python runbooks (componentize-py) in the host: admitted under the same sandbox, with the
//! filesystem, sockets, environment and processes granting nothing, and runaways stopped as
//! the Rust hostile guests are. The high-error-rate twins are in `runbooks.rs`.

use std::io::ErrorKind;
use std::net::TcpListener;
use std::time::Duration;

use quell::config::{ByteSize, HumanDuration};
use quell::sandbox::InvokeError;

use crate::harness::{Env, incident, load, workspace};

/// The hostile guest's policy, granting nothing but the timeline.
fn hostile_policy(env: &Env, timeout: &str) -> std::path::PathBuf {
    let guest = workspace().join("tests/python-guests/python-hostile");
    let component = guest.join("python_hostile.wasm");
    assert!(
        component.is_file(),
        "{} is missing: run scripts/build-runbooks.sh (scripts/test.sh does)",
        component.display()
    );
    let dir = env.dir.path().join("python-hostile");
    std::fs::create_dir_all(&dir).unwrap();
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[runbook]\nname = \"python-hostile\"\ncomponent = {:?}\nmode = \"diagnose\"\n\
             timeout = {timeout:?}\nmemory = \"64MiB\"\n",
            component.display().to_string()
        ),
    )
    .unwrap();
    policy
}

fn behaving(behaviour: &str, port: u16) -> quell::incident::Incident {
    incident(
        &[("alertname", "Hostile")],
        &[
            ("quell.test/python", behaviour),
            ("quell.test/port", &port.to_string()),
        ],
    )
}

#[tokio::test]
async fn a_python_runbook_reaching_for_files_sockets_and_environment_gets_nothing() {
    let env = Env::new();
    let runtime = env.runtime();
    let runbook = load(&runtime, &hostile_policy(&env, "60s"));
    // componentize-py imports the whole world: the ungranted capabilities are noted, not
    // refused, and every call through them is denied.
    assert_eq!(runbook.notes.len(), 3, "{:?}", runbook.notes);
    assert!(
        runbook.notes[0].contains("grants no kubectl: every kubectl call is denied"),
        "{:?}",
        runbook.notes
    );

    // A real listener the guest is told about: nothing may reach it.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let probe = runtime
        .match_and_diagnose(&runbook, &behaving("reach", port))
        .await;
    let diagnosis = probe.outcome.unwrap().expect("it matches");
    let seen: Vec<(String, bool, String)> = diagnosis
        .findings
        .iter()
        .map(|f| (f.name.clone(), f.ok, f.summary.clone()))
        .collect();
    let names: Vec<&str> = seen.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "read-file",
            "list-root",
            "write-file",
            "socket",
            "resolve",
            "environment",
            "subprocess",
            "argv"
        ]
    );
    // Each attempt came back as an exception in the guest (ok = refused), none as data.
    for (name, refused, summary) in &seen {
        assert!(refused, "{name} reached something: {summary}");
        assert!(summary.starts_with("refused: "), "{name}: {summary}");
    }
    assert!(
        matches!(listener.accept(), Err(e) if e.kind() == ErrorKind::WouldBlock),
        "the guest connected to the loopback listener"
    );
    assert!(!std::path::Path::new("/tmp/quell-python-pwned").exists());
    assert!(probe.calls.is_empty(), "{:?}", probe.calls);
}

#[tokio::test]
async fn a_python_runbook_reaches_the_0_1_1_additions_through_its_imports() {
    let env = Env::new();
    let runtime = env.runtime();
    let runbook = load(&runtime, &hostile_policy(&env, "60s"));
    let asked = runtime
        .match_and_diagnose_as(&runbook, &behaving("context", 9), true)
        .await;
    let diagnosis = asked.outcome.unwrap().expect("it matches");
    let said: Vec<(&str, &str)> = diagnosis
        .findings
        .iter()
        .map(|f| (f.name.as_str(), f.summary.as_str()))
        .collect();
    assert_eq!(said[0], ("dry-run", "True"));
    assert_eq!(said[1].0, "field-selector");
    assert!(
        said[1]
            .1
            .starts_with("denied: no [[kubectl.allow]] rule allows \"get\" on events"),
        "{said:?}"
    );
    assert!(
        said[1]
            .1
            .contains("with fields \"involvedObject.kind=Pod,involvedObject.name=api-1\""),
        "{said:?}"
    );
    assert_eq!(asked.escalation.as_deref(), Some("python hands over"));
}

/// Two instance slots: while a Python runbook holds one (blocked in a host call), a Rust
/// runbook still gets the other. Python's 14 core instances each used to leave a Rust run
/// without any (the pool counted 8 per slot).
#[tokio::test(flavor = "multi_thread")]
async fn a_python_runbook_in_flight_leaves_room_for_a_rust_one() {
    let routes = quell_tests::http::TestRoutes::new();
    let stall = quell_tests::http::HttpServer::start(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        routes.router(),
    )
    .unwrap();
    let mut env = Env::new();
    env.config.sandbox.max_instances = 2;
    let policy = hostile_policy(&env, "60s");
    let text = std::fs::read_to_string(&policy).unwrap()
        + "[http]\nnetworks = [\"127.0.0.0/8\"]\n[[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n";
    std::fs::write(&policy, text).unwrap();
    let runtime = std::sync::Arc::new(env.runtime());
    let python = std::sync::Arc::new(load(&runtime, &policy));
    let rust = load(
        &runtime,
        &env.policy("probe", "probe", "mode = \"diagnose\"\ntimeout = \"60s\"\n"),
    );
    let held = incident(
        &[("alertname", "Hostile")],
        &[
            ("quell.test/python", "hold"),
            ("quell.test/url", &stall.url("/stall")),
        ],
    );
    let (rt, py) = (runtime.clone(), python.clone());
    let holding = tokio::spawn(async move { rt.match_and_diagnose(&py, &held).await });
    // The Python instance is alive, blocked in its host call, once the server has the request.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !routes.requests().iter().any(|r| r.path == "/stall") {
        assert!(
            std::time::Instant::now() < deadline,
            "the Python runbook never called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let note = incident(
        &[("alertname", "Fine")],
        &[("quell.test/diagnose-calls", r#"[{"note": "still room"}]"#)],
    );
    let beside = runtime.match_and_diagnose(&rust, &note).await;
    assert!(beside.outcome.is_ok(), "{:?}", beside.outcome);
    assert_eq!(beside.notes, ["still room"]);
    holding.abort();
}

#[tokio::test]
async fn runaway_python_runbooks_are_stopped_and_the_host_keeps_serving() {
    let env = Env::new();
    let runtime = env.runtime();
    let quick = load(&runtime, &hostile_policy(&env, "2s"));

    let spin = runtime
        .match_and_diagnose(&quick, &behaving("spin", 9))
        .await;
    assert!(
        matches!(spin.outcome, Err(InvokeError::Deadline(d)) if d == HumanDuration(Duration::from_secs(2))),
        "{:?}",
        spin.outcome
    );

    // The cases that are not about the deadline get one no busy machine gets near.
    let env = Env::new();
    let patient = load(&runtime, &hostile_policy(&env, "60s"));
    let hoard = runtime
        .match_and_diagnose(&patient, &behaving("memory", 9))
        .await;
    assert!(
        matches!(hoard.outcome, Err(InvokeError::Memory(ByteSize(m))) if m == 64 << 20),
        "{:?}",
        hoard.outcome
    );
    let recursion = runtime
        .match_and_diagnose(&patient, &behaving("recurse", 9))
        .await;
    assert!(
        matches!(&recursion.outcome, Err(InvokeError::Guest(e))
            if e == "Hostile.diagnose raised RecursionError: maximum recursion depth exceeded"),
        "{:?}",
        recursion.outcome
    );
    let raised = runtime
        .match_and_diagnose(&patient, &behaving("raise", 9))
        .await;
    assert!(
        matches!(&raised.outcome, Err(InvokeError::Guest(e))
            if e == "Hostile.diagnose raised RuntimeError: the runbook gave up"),
        "{:?}",
        raised.outcome
    );
    // The traceback is kept as the guest's output, for the author.
    assert!(
        raised.stderr.contains("Traceback") && raised.stderr.contains("the runbook gave up"),
        "{}",
        raised.stderr
    );

    // And the same runtime still runs Python.
    let fine = runtime
        .match_and_diagnose(&patient, &behaving("reach", 9))
        .await;
    assert!(fine.outcome.is_ok(), "{:?}", fine.outcome);
}

/// Runs the project venv's pytest on `dir`: whether it passed, and what it said.
fn pytest(dir: &std::path::Path) -> (bool, String) {
    let pytest = workspace().join(".quell/venv-python/bin/pytest");
    assert!(
        pytest.is_file(),
        "{} is missing: run scripts/setup.sh (scripts/test.sh does)",
        pytest.display()
    );
    let out = std::process::Command::new(&pytest)
        .args(["-q", "-p", "no:cacheprovider"])
        .arg(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}

#[test]
fn the_python_sdk_and_every_python_runbook_pass_their_own_tests() {
    let mut dirs = vec![workspace().join("runbook-sdk/python")];
    for entry in std::fs::read_dir(workspace().join("runbooks")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("app.py").is_file() {
            dirs.push(dir);
        }
    }
    assert!(dirs.len() >= 2, "no Python runbook found: {dirs:?}");
    for dir in dirs {
        // Each directory alone: every runbook's tests import its own `app`.
        let (passed, said) = pytest(&dir);
        assert!(passed, "pytest {} failed:\n{said}", dir.display());
        assert!(said.contains(" passed"), "{}: {said}", dir.display());
    }
}

/// The guide's example runbook and its test, as written in `docs/runbooks-python.md`, pass:
/// the docs cannot drift from the SDK.
#[test]
fn the_python_guide_example_passes_its_test() {
    let guide = std::fs::read_to_string(workspace().join("docs/runbooks-python.md")).unwrap();
    let blocks: Vec<&str> = guide
        .split("```python\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap())
        .collect();
    assert_eq!(blocks.len(), 2, "the guide's app.py and test_app.py");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("app.py"), blocks[0]).unwrap();
    std::fs::write(dir.path().join("test_app.py"), blocks[1]).unwrap();
    std::fs::write(
        dir.path().join("conftest.py"),
        format!(
            "import sys\nsys.path.insert(0, {:?})\n",
            workspace().join("runbook-sdk/python").display().to_string()
        ),
    )
    .unwrap();
    let (passed, said) = pytest(dir.path());
    assert!(passed && said.contains("1 passed"), "{said}");
}
