//! The console in a real browser: headless Chromium (Debian's `chromium`) driven over the
//! DevTools protocol, against the daemon with the simulator and the shipped runbooks.
//! Screenshots of each page go to `target/test-artifacts/console/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::page::{Page, ScreenshotParams};
use futures_util::StreamExt;
use quell_tests::kube_sim::{KubeSim, Scenario};
use reqwest::StatusCode;
use serde_json::json;

use crate::daemon::{Running, daemon_config};
use crate::harness::{Env, workspace};

const OPERATOR: &str = "operator-secret";
const VIEWER: &str = "viewer-secret";

fn artifacts() -> PathBuf {
    let dir = workspace().join("target/test-artifacts/console");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

async fn screenshot(page: &Page, name: &str) {
    page.save_screenshot(
        ScreenshotParams::builder().full_page(true).build(),
        artifacts().join(format!("{name}.png")),
    )
    .await
    .unwrap();
}

/// Waits (a minute at most: a hang guard) until the page's HTML contains `text`, reloading
/// it first when `reload`.
async fn wait_for_text(page: &Page, text: &str, reload: bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reload {
            page.reload().await.unwrap();
        }
        let html = page.content().await.unwrap();
        if html.contains(text) {
            return html;
        }
        assert!(Instant::now() < deadline, "no {text:?} in {html}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Waits (a minute at most) until the page's URL ends with `path` and its document loaded.
async fn wait_for_path(page: &Page, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let url = page.url().await.unwrap().unwrap_or_default();
        let state: String = page
            .evaluate("document.readyState")
            .await
            .unwrap()
            .into_value()
            .unwrap_or_default();
        if url.ends_with(path) && state == "complete" {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "still at {url} ({state}), not {path}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn sign_in(page: &Page, base: &str, token: &str) {
    page.goto(format!("{base}/login")).await.unwrap();
    page.find_element("#token")
        .await
        .unwrap()
        .click()
        .await
        .unwrap()
        .type_str(token)
        .await
        .unwrap();
    page.find_element("main button[type=submit]")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(page, "/").await;
}

/// `fetch` from the page (its cookies, its origin): the status of a POST of `form`.
async fn post_from_page(page: &Page, path: &str, form: &str) -> i64 {
    let script = format!(
        "fetch({path:?}, {{method: 'POST', credentials: 'same-origin', redirect: 'manual', \
         headers: {{'content-type': 'application/x-www-form-urlencoded'}}, body: {form:?}}})\
         .then(r => r.status)"
    );
    page.evaluate(script).await.unwrap().into_value().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn on_call_works_an_incident_in_a_real_browser() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::crash_looping(5));
    let health = quell_tests::http::HttpServer::start(
        std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        quell_tests::http::TestRoutes::new().router(),
    )
    .unwrap();
    let mut env = Env::new().kube(&sim);
    daemon_config(&mut env);
    env.config.auth.api_tokens = vec![OPERATOR.to_owned()];
    env.config.auth.viewer_tokens = vec![VIEWER.to_owned()];
    env.shipped_policy("k8s-context", |t| t);
    let policy = crate::runbooks::high_error_rate(&env);
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        text.replace("mode = \"auto\"", "mode = \"approve\""),
    )
    .unwrap();
    let app = Running::start_configured(env).await;

    let profile = tempfile::tempdir().unwrap();
    let config = BrowserConfig::builder()
        .chrome_executable("/usr/bin/chromium")
        .no_sandbox()
        .new_headless_mode()
        .user_data_dir(profile.path())
        .window_size(1280, 900)
        .args(["--disable-gpu", "--disable-dev-shm-usage"])
        .build()
        .unwrap();
    let (mut browser, mut handler) = Browser::launch(config)
        .await
        .expect("/usr/bin/chromium starts (scripts/setup.sh installs it)");
    let events = tokio::spawn(async move { while handler.next().await.is_some() {} });
    let page = browser.new_page("about:blank").await.unwrap();

    // Sign in; the list is empty.
    sign_in(&page, &app.base, OPERATOR).await;
    screenshot(&page, "incidents-empty").await;

    // Accessibility: every form control has a label or text, and Tab reaches the controls.
    let unlabelled: i64 = page
        .evaluate(
            "[...document.querySelectorAll('input:not([type=hidden]), select, button')]\
             .filter(e => !(e.labels && e.labels.length) && !e.textContent.trim()).length",
        )
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(unlabelled, 0, "every control is labelled");

    // A new incident appears without a reload.
    let alert = json!({
        "receiver": "quell", "status": "firing", "version": "4",
        "groupKey": "{}:{alertname=\"HighErrorRate\"}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing",
            "labels": {"alertname": "HighErrorRate", "service": "api",
                       "namespace": "production", "severity": "critical"},
            "annotations": {"summary": "api 5xx above 5%", "health_url": health.url("/health")},
            "startsAt": "2026-11-30T03:00:00Z", "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph", "fingerprint": "browser",
        }],
    });
    let (status, answer) = app.post("/webhooks/alertmanager", alert.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();
    wait_for_text(&page, &id, false).await;
    screenshot(&page, "incidents").await;

    // The incident: the rendered kubectl commands, and the plan to approve.
    page.goto(format!("{}/incidents/{id}", app.base))
        .await
        .unwrap();
    let html = wait_for_text(&page, "Approve high-error-rate", true).await;
    assert!(
        html.contains("kubectl logs") || html.contains("kubectl get pods"),
        "the calls as the host ran them: {html}"
    );
    screenshot(&page, "incident-plan").await;
    page.find_element("form[action$='/approve'] button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    // The form posts and the page comes back with the decision on the timeline (no reload
    // here: it would cancel the form's navigation).
    wait_for_text(&page, "approved by console", false).await;
    wait_for_text(&page, "Rolled back deployment/api", true).await;
    screenshot(&page, "incident-remediated").await;

    page.goto(format!("{}/runbooks", app.base)).await.unwrap();
    wait_for_text(&page, "Pause remediation", false).await;
    screenshot(&page, "runbooks").await;
    page.goto(format!("{}/dead", app.base)).await.unwrap();
    wait_for_text(&page, "dead letters", false).await;
    screenshot(&page, "dead-letters").await;

    // A POST without the CSRF token is refused.
    let forged = post_from_page(&page, &format!("/incidents/{id}/ack"), "").await;
    assert_eq!(forged, 403);

    // A viewer sees no action and cannot act, even with its own session's token.
    page.find_element("header form button")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&page, "/login").await;
    sign_in(&page, &app.base, VIEWER).await;
    page.goto(format!("{}/incidents/{id}", app.base))
        .await
        .unwrap();
    let html = page.content().await.unwrap();
    assert!(html.contains(&id));
    assert!(
        !html.contains("Acknowledge") && !html.contains(">Resolve<"),
        "no action buttons for a viewer"
    );
    screenshot(&page, "incident-viewer").await;
    let csrf: String = page
        .evaluate("document.querySelector('input[name=csrf]').value")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    let refused = post_from_page(
        &page,
        &format!("/incidents/{id}/resolve"),
        &format!("csrf={csrf}"),
    )
    .await;
    assert_eq!(refused, 403);
    assert_ne!(app.incident_with(&id, OPERATOR).await["status"], "resolved");

    browser.close().await.unwrap();
    let _ = browser.wait().await;
    events.abort();
    app.stop().await;
}
