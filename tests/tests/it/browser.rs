//! The console in a real browser: headless Chromium (Debian's `chromium`) driven over the
//! DevTools protocol, against the daemon with the simulator and the shipped runbooks.
//! Screenshots of each page go to `target/test-artifacts/console/`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::emulation::MediaFeature;
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
        // Mid-navigation there is no document to read yet.
        let html = page.content().await.unwrap_or_default();
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
        // Mid-navigation the old document's context is gone: not there yet.
        let state: String = match page.evaluate("document.readyState").await {
            Ok(state) => state.into_value().unwrap_or_default(),
            Err(_) => String::new(),
        };
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

/// Every visible run of text whose WCAG 2 contrast with the background under it is below AA
/// (4.5:1; 3:1 for large text), as `tag "text": ratio < need`.
const LOW_CONTRAST: &str = r#"(() => {
  const rgba = (c) => { const v = (c.match(/[\d.]+/g) || []).map(Number);
    return { r: v[0] || 0, g: v[1] || 0, b: v[2] || 0, a: v.length > 3 ? v[3] : 1 }; };
  const over = (top, under) => ({ r: top.r * top.a + under.r * (1 - top.a),
    g: top.g * top.a + under.g * (1 - top.a), b: top.b * top.a + under.b * (1 - top.a), a: 1 });
  const luminance = ({ r, g, b }) => { const f = (v) => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b); };
  const background = (el) => {
    const layers = [];
    for (let e = el; e; e = e.parentElement) {
      const c = rgba(getComputedStyle(e).backgroundColor);
      if (c.a > 0) layers.push(c);
      if (c.a >= 1) break;
    }
    let bg = { r: 255, g: 255, b: 255, a: 1 };
    for (const layer of layers.reverse()) bg = over(layer, bg);
    return bg;
  };
  const low = [];
  for (const el of document.querySelectorAll("body *")) {
    const text = [...el.childNodes].filter((n) => n.nodeType === 3)
      .map((n) => n.textContent.trim()).join(" ").trim();
    const style = getComputedStyle(el);
    if (!text || !el.getClientRects().length || style.visibility === "hidden") continue;
    const bg = background(el);
    const fg = over(rgba(style.color), bg);
    const [hi, lo] = [luminance(fg), luminance(bg)].sort((a, b) => b - a);
    const ratio = (hi + 0.05) / (lo + 0.05);
    const size = parseFloat(style.fontSize);
    const need = size >= 24 || (Number(style.fontWeight) >= 700 && size >= 18.66) ? 3 : 4.5;
    if (ratio < need) low.push(`${el.tagName.toLowerCase()} "${text.slice(0, 40)}": ${ratio.toFixed(2)} < ${need}`);
  }
  return low;
})()"#;

/// Checks the page's contrast in the light and the dark scheme (the console follows
/// `prefers-color-scheme`), leaving the page in the light one.
async fn assert_readable(page: &Page, what: &str) {
    for scheme in ["dark", "light"] {
        page.emulate_media_features(vec![MediaFeature {
            name: "prefers-color-scheme".to_owned(),
            value: scheme.to_owned(),
        }])
        .await
        .unwrap();
        let low: Vec<String> = page
            .evaluate(LOW_CONTRAST)
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert!(
            low.is_empty(),
            "{what} ({scheme}): contrast below AA: {low:#?}"
        );
    }
}

/// Presses Tab until the focused element's text is `target` (at most 100 times), and checks
/// that every control on the way showed a focus indicator. Returns the texts passed.
async fn tab_to(page: &Page, target: &str) -> Vec<String> {
    let mut passed = Vec::new();
    for _ in 0..100 {
        page.find_element("body")
            .await
            .unwrap()
            .press_key("Tab")
            .await
            .unwrap();
        let (text, outline): (String, String) = page
            .evaluate(
                "(() => { const e = document.activeElement; const s = getComputedStyle(e);
                   return [(e.textContent || e.value || e.tagName).trim().slice(0, 60),
                           s.outlineStyle === 'none' || s.outlineWidth === '0px'
                             ? 'none' : s.outlineStyle]; })()",
            )
            .await
            .unwrap()
            .into_value()
            .unwrap();
        assert_ne!(outline, "none", "{text:?} shows no focus indicator");
        if text == target {
            return passed;
        }
        passed.push(text);
    }
    panic!("Tab never reached {target:?}; it went through {passed:#?}");
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

    // The sign-in page is readable, and works from the keyboard alone.
    page.goto(format!("{}/login", app.base)).await.unwrap();
    wait_for_path(&page, "/login").await;
    assert_readable(&page, "sign-in").await;
    tab_to(&page, "INPUT").await; // the token field
    page.find_element("#token")
        .await
        .unwrap()
        .type_str(OPERATOR)
        .await
        .unwrap()
        .press_key("Enter")
        .await
        .unwrap();
    wait_for_path(&page, "/").await;
    screenshot(&page, "incidents-empty").await;
    assert_readable(&page, "incidents").await;

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

    // A keyboard user keeps their place while the list refreshes under them.
    tab_to(&page, &id).await;
    let other = json!({
        "receiver": "quell", "status": "firing", "version": "4",
        "groupKey": "{}:{alertname=\"QueueBacklog\"}", "truncatedAlerts": 0,
        "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": [{
            "status": "firing", "labels": {"alertname": "QueueBacklog", "severity": "low"},
            "annotations": {}, "startsAt": "2026-11-30T03:01:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "backlog",
        }],
    });
    let (status, answer) = app.post("/webhooks/alertmanager", other.to_string()).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    wait_for_text(
        &page,
        answer["alerts"][0]["incident"].as_str().unwrap(),
        false,
    )
    .await;
    let focused: String = page
        .evaluate("document.activeElement.getAttribute('href') || ''")
        .await
        .unwrap()
        .into_value()
        .unwrap();
    assert_eq!(
        focused,
        format!("/incidents/{id}"),
        "focus survives the refresh"
    );

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
    assert_readable(&page, "an incident").await;
    // Approve from the keyboard: Tab to the button, Enter.
    let passed = tab_to(&page, "Approve high-error-rate's plan").await;
    assert!(
        passed.contains(&"Acknowledge".to_owned()),
        "Tab passes the other actions first: {passed:?}"
    );
    page.find_element("body")
        .await
        .unwrap()
        .press_key("Enter")
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
    assert_readable(&page, "runbooks").await;
    page.goto(format!("{}/dead", app.base)).await.unwrap();
    wait_for_text(&page, "dead letters", false).await;
    screenshot(&page, "dead-letters").await;
    assert_readable(&page, "dead letters").await;

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
