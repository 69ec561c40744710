//! The web console over real HTTP: sign-in, sessions, roles, CSRF, and the pages on-call
//! reads (rendered capability calls among them). The browser tests are still to come.

use quell_tests::kube_sim::{KubeSim, Scenario};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_SECURITY_POLICY, COOKIE, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::daemon::{Running, daemon_config, payload};
use crate::harness::Env;

struct Browser {
    client: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

impl Browser {
    fn new(app: &Running) -> Browser {
        Browser {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: app.base.clone(),
            cookie: None,
        }
    }

    async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = self.client.get(format!("{}{path}", self.base));
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn post(&self, path: &str, form: &[(&str, &str)]) -> reqwest::Response {
        let mut request = self.client.post(format!("{}{path}", self.base)).form(form);
        if let Some(cookie) = &self.cookie {
            request = request.header(COOKIE, cookie);
        }
        request.send().await.unwrap()
    }

    async fn sign_in(&mut self, token: &str) -> reqwest::Response {
        let response = self.post("/login", &[("token", token)]).await;
        if let Some(set) = response.headers().get(SET_COOKIE) {
            let pair = set.to_str().unwrap().split(';').next().unwrap().to_owned();
            self.cookie = Some(pair);
        }
        response
    }

    /// The page's CSRF token (from its forms).
    async fn csrf(&self, path: &str) -> String {
        let page = self.get(path).await.text().await.unwrap();
        let at = page
            .find("name=\"csrf\" value=\"")
            .expect("a form with the token");
        page[at + 19..].split('"').next().unwrap().to_owned()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn on_call_signs_in_reads_the_incident_and_approves_its_plan() {
    let sim = KubeSim::start().unwrap();
    sim.add_service("production", "api", Scenario::healthy(1));
    let mut env = Env::new().kube(&sim);
    daemon_config(&mut env);
    env.config.auth.api_tokens = vec!["operator-secret".to_owned()];
    env.config.auth.viewer_tokens = vec!["viewer-secret".to_owned()];
    env.policy(
        "probe",
        "probe",
        "mode = \"approve\"\ntimeout = \"300s\"\n\
         [[kubectl.allow]]\nverbs = [\"get\"]\nresources = [\"pods\"]\nnamespaces = [\"production\"]\n\
         [ssh]\nuser = \"root\"\nhosts = [\"127.0.0.1\"]\n\
         [ssh.commands]\nid = { run = \"id\", effect = \"read\" }\n\
         [http]\nnetworks = [\"127.0.0.0/8\"]\n\
         [[http.allow]]\nmethods = [\"GET\"]\nurls = [\"http://127.0.0.1:*/**\"]\n",
    );
    let app = Running::start_configured(env).await;
    let get_pods =
        json!([{"kubectl": {"verb": "get", "resource": "pods", "namespace": "production"}}]);
    let (status, answer) = app
        .post(
            "/webhooks/alertmanager",
            payload(
                "firing",
                "console",
                "2026-11-30T03:00:00Z",
                json!({"quell.test/diagnose-calls": get_pods.to_string()}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let id = answer["alerts"][0]["incident"].as_str().unwrap().to_owned();

    let mut operator = Browser::new(&app);
    let first = operator.get("/").await;
    assert_eq!(
        first.status(),
        StatusCode::SEE_OTHER,
        "signed out: to the sign-in page"
    );
    assert_eq!(first.headers()[LOCATION], "/login");
    assert_eq!(
        operator.sign_in("not-a-token").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let signed = operator.sign_in("operator-secret").await;
    assert_eq!(signed.status(), StatusCode::SEE_OTHER);
    let cookie = signed.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );

    let list = operator.get("/").await;
    let csp = list.headers()[CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert!(list.text().await.unwrap().contains(&id));
    // Filters: by time too, with a clear refusal of a bad value.
    let recent = operator
        .get("/?status=open&since=1h")
        .await
        .text()
        .await
        .unwrap();
    assert!(recent.contains(&id), "{recent}");
    let none = operator
        .get("/?status=resolved")
        .await
        .text()
        .await
        .unwrap();
    assert!(!none.contains(&id));
    let bad = operator.get("/?since=yesterday").await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // The plan waits; the page shows the rendered kubectl command and the approve button.
    let page = format!("/incidents/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let text = loop {
        let text = operator.get(&page).await.text().await.unwrap();
        if text.contains("Approve probe") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no plan to approve: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(
        text.contains("kubectl get pods --namespace=production"),
        "the call as the host ran it: {text}"
    );

    // A POST without the session's CSRF token is refused; with it, the plan runs.
    let forged = operator
        .post(&format!("{page}/approve"), &[("runbook", "probe")])
        .await;
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let csrf = operator.csrf(&page).await;
    let approved = operator
        .post(
            &format!("{page}/approve"),
            &[("csrf", &csrf), ("runbook", "probe")],
        )
        .await;
    assert_eq!(approved.status(), StatusCode::SEE_OTHER);
    let done = loop {
        let text = operator.get(&page).await.text().await.unwrap();
        if text.contains("remediate — remediated") {
            break text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not remediated: {text}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(done.contains("approved"), "the timeline says who approved");

    // The runbooks page: recent runs, and the pause switch for an operator.
    let runbooks = operator.get("/runbooks").await.text().await.unwrap();
    assert!(
        runbooks.contains("remediate → remediated") && runbooks.contains(&id),
        "{runbooks}"
    );
    let csrf = operator.csrf("/runbooks").await;
    let paused = operator
        .post("/remediation", &[("csrf", &csrf), ("paused", "true")])
        .await;
    assert_eq!(paused.status(), StatusCode::SEE_OTHER);
    let runbooks = operator.get("/runbooks").await.text().await.unwrap();
    assert!(
        runbooks.contains("Remediation is <strong>paused</strong>"),
        "{runbooks}"
    );

    // A viewer reads, sees no action, and cannot act with its own token.
    let mut viewer = Browser::new(&app);
    assert_eq!(
        viewer.sign_in("viewer-secret").await.status(),
        StatusCode::SEE_OTHER
    );
    let text = viewer.get(&page).await.text().await.unwrap();
    assert!(text.contains(&id));
    assert!(
        !text.contains("Acknowledge") && !text.contains("Resolve</button>"),
        "{text}"
    );
    let csrf = viewer.csrf(&page).await;
    let refused = viewer
        .post(&format!("{page}/resolve"), &[("csrf", &csrf)])
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_ne!(
        app.incident_with(&id, "operator-secret").await["status"],
        "resolved"
    );
    app.stop().await;
}
