//! Fuzzing harnesses for Quell's untrusted inputs, one `pub fn <target>(data: &[u8])` each.
//!
//! The cargo-fuzz targets in `tests/fuzz/fuzz_targets/` are one-line calls into these, and the
//! stable test `fuzz_corpus` replays the committed corpus (`tests/fuzz/corpus/<target>/`)
//! through them, followed by a short seeded mutation run ([`Mutator`]). A harness never
//! returns an error: every input is fine unless a property breaks, and then it panics, which
//! libFuzzer records as a crash and `cargo test` as a failure. Errors from the code under
//! test are values and are expected; a panic inside it is a bug.
//!
//! ```
//! quell_tests::fuzz::kubectl(b"get\npods\nproduction\napi-1");
//! for target in quell_tests::fuzz::TARGETS {
//!     (target.run)(b"");
//! }
//! ```
// A broken property is reported by panicking: that is what a fuzzer sees as a crash.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use axum::http::{HeaderMap, HeaderValue};
use hmac::{Hmac, Mac};
use ipnet::IpNet;
use quell::api::slack::{self, Interaction};
use quell::bindings::quell::runbook::kubectl::{Options, OutputFormat, Request, Verb};
use quell::capabilities::http::{canonical, check_address, non_public_kind};
use quell::capabilities::kubectl::{Call, grammar};
use quell::config::GenericFields;
use quell::policy::{Capability, Policy};
use quell::sources::{self, Rejection, Source};
use serde_json::{Value, json};
use sha2::Sha256;

/// One fuzz target: its name (the corpus folder and the cargo-fuzz binary) and its harness.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// `tests/fuzz/corpus/<name>/` and `cargo fuzz run <name>`.
    pub name: &'static str,
    /// The harness.
    pub run: fn(&[u8]),
}

/// Every target, in the order the replay test runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "payloads",
        run: payloads,
    },
    Target {
        name: "policy",
        run: policy,
    },
    Target {
        name: "slack_verify",
        run: slack_verify,
    },
    Target {
        name: "slack_interaction",
        run: slack_interaction,
    },
    Target {
        name: "kubectl",
        run: kubectl,
    },
    Target {
        name: "egress",
        run: egress,
    },
    Target {
        name: "ssh",
        run: ssh,
    },
];

/// Splits off the first line (without its `\n`); the rest is empty when there is no `\n`.
fn line(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (data, &[]),
    }
}

// ---------------------------------------------------------------------------------------------
// Alert payloads

/// A configured generic mapping (the one in `sources`' unit tests).
fn mapped_fields() -> GenericFields {
    GenericFields {
        dedup_key: "/alert/id".to_owned(),
        title: "/alert/name".to_owned(),
        severity: "/alert/severity".to_owned(),
        labels: "/alert/labels".to_owned(),
        ..GenericFields::default()
    }
}

/// The body through the Alertmanager, Grafana and generic parsers (default and a configured
/// mapping). Not JSON is `Malformed` and JSON never is; a usable delivery has at least one
/// alert, one incident per element of `alerts` (Alertmanager, Grafana) or exactly one
/// (generic), and every incident has labels (sorted, as are its annotations), a fingerprint,
/// a `firing`/`resolved` status, its source's name and an `INC-` id of 8 upper-case hex
/// digits.
pub fn payloads(data: &[u8]) {
    let json = serde_json::from_slice::<Value>(data);
    let cases = [
        (
            Source::Alertmanager,
            Some("application/json"),
            GenericFields::default(),
        ),
        (Source::Grafana, None, GenericFields::default()),
        (
            Source::Generic,
            Some("text/plain"),
            GenericFields::default(),
        ),
        (Source::Generic, Some("application/json"), mapped_fields()),
    ];
    for (source, content_type, fields) in cases {
        let result = sources::parse(source, data, content_type, &fields);
        match (&json, result) {
            (Err(_), Err(Rejection::Malformed(message))) => assert!(!message.is_empty()),
            (Err(e), other) => panic!("{source:?}: not JSON ({e}) but {other:?}"),
            (Ok(_), Err(Rejection::Malformed(message))) => {
                panic!("{source:?}: JSON refused as malformed: {message}")
            }
            (Ok(_), Err(Rejection::Unusable(message))) => assert!(!message.is_empty()),
            (Ok(value), Ok(delivery)) => {
                assert!(!delivery.alerts.is_empty(), "{source:?}: no alerts");
                if source == Source::Generic {
                    assert_eq!(delivery.alerts.len(), 1);
                    assert_eq!(delivery.truncated, 0);
                    assert_eq!(delivery.alerts[0].alert_json, value.to_string());
                } else {
                    let sent = value["alerts"].as_array().map_or(0, Vec::len);
                    assert_eq!(delivery.alerts.len(), sent, "{source:?}");
                    let truncated = value.get("truncatedAlerts").and_then(Value::as_u64);
                    assert_eq!(delivery.truncated, truncated.unwrap_or(0));
                }
                for incident in &delivery.alerts {
                    assert_eq!(incident.source, source.name());
                    assert!(matches!(incident.status.as_str(), "firing" | "resolved"));
                    assert!(!incident.labels.is_empty(), "{incident:?}");
                    assert!(incident.labels.is_sorted() && incident.annotations.is_sorted());
                    assert!(!incident.fingerprint.is_empty(), "{incident:?}");
                    let hex = incident.id.strip_prefix("INC-").unwrap_or_default();
                    assert!(
                        hex.len() == 8 && hex.bytes().all(|b| b"0123456789ABCDEF".contains(&b)),
                        "{:?}",
                        incident.id
                    );
                    if let Some(starts_at) = &incident.starts_at {
                        assert!(!starts_at.is_empty() && !starts_at.starts_with("0001-01-01"));
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Policies

/// Policy text (invalid UTF-8 replaced). A refusal says why; an accepted policy grants the
/// timeline first, and each of its ssh templates renders or refuses without parameters.
pub fn policy(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    match Policy::parse(&text) {
        Err(message) => assert!(!message.is_empty()),
        Ok(policy) => {
            assert_eq!(policy.granted().first(), Some(&Capability::Timeline));
            if let Some(ssh) = &policy.ssh {
                for (id, template) in &ssh.commands {
                    let _ = template.render(id.as_str(), &[]);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Slack

/// The signing secret of Slack's documented example.
const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
/// Ten seconds after the documented example's timestamp.
const SLACK_NOW: i64 = 1_531_420_628;

fn slack_signature(timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(SLACK_SECRET.as_bytes()).unwrap();
    mac.update(format!("v0:{timestamp}:").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// `timestamp\nsignature\nbody` through `verify` with a fixed secret, at several clocks.
/// Accepted means the timestamp is within the window and the signature is the HMAC of
/// exactly this timestamp and body (checked independently); the correct signature for the
/// same timestamp and body is accepted, and one flipped body bit is not.
pub fn slack_verify(data: &[u8]) {
    let (timestamp, rest) = line(data);
    let (signature, body) = line(rest);
    let mut headers = HeaderMap::new();
    if let Ok(value) = HeaderValue::from_bytes(timestamp) {
        headers.insert("x-slack-request-timestamp", value);
    }
    if let Ok(value) = HeaderValue::from_bytes(signature) {
        headers.insert("x-slack-signature", value);
    }
    let ts_text = headers
        .get("x-slack-request-timestamp")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let ts: Option<i64> = ts_text.as_deref().and_then(|t| t.parse().ok());
    for now in [SLACK_NOW, 0, i64::MIN, i64::MAX, ts.unwrap_or(0)] {
        match slack::verify(SLACK_SECRET, &headers, body, now) {
            Err(why) => assert!(!why.is_empty()),
            Ok(()) => {
                let ts = ts.expect("accepted without a numeric timestamp");
                assert!(now.abs_diff(ts) <= 300, "accepted {ts} at {now}");
                let given = headers["x-slack-signature"].to_str().unwrap();
                let given = hex::decode(given.strip_prefix("v0=").unwrap()).unwrap();
                let text = ts_text.as_deref().unwrap();
                assert_eq!(
                    given,
                    slack_signature(text, body),
                    "a forged signature passed"
                );
            }
        }
    }
    if let (Some(text), Some(ts)) = (ts_text, ts) {
        let good = format!("v0={}", hex::encode(slack_signature(&text, body)));
        headers.insert("x-slack-signature", HeaderValue::from_str(&good).unwrap());
        assert_eq!(slack::verify(SLACK_SECRET, &headers, body, ts), Ok(()));
        let mut tampered = body.to_vec();
        match tampered.last_mut() {
            Some(last) => *last ^= 1,
            None => tampered.push(b'x'),
        }
        assert!(slack::verify(SLACK_SECRET, &headers, &tampered, ts).is_err());
    }
}

fn slack_form(payload: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("payload", payload)
        .finish()
}

/// An interaction's form body, and the input as the JSON `payload` of a form. A JSON payload
/// is never `Malformed`; a decision's incident holds no `|`, and a decision re-encoded as
/// Slack sends it reads back as the same decision.
pub fn slack_interaction(data: &[u8]) {
    let wrapped = slack_form(&String::from_utf8_lossy(data));
    for (body, json) in [
        (data, false),
        (
            wrapped.as_bytes(),
            serde_json::from_slice::<Value>(data).is_ok(),
        ),
    ] {
        let read = slack::interaction(body);
        if json {
            assert_ne!(read, Interaction::Malformed, "a JSON payload was malformed");
        }
        if let Interaction::Decision {
            user,
            approve,
            incident,
            runbook,
            plan,
        } = &read
        {
            assert!(!incident.contains('|'), "{incident:?}");
            assert!(!runbook.contains('|'), "{runbook:?}");
            let value = match plan {
                Some(plan) => format!("{incident}|{runbook}|{plan}"),
                None => format!("{incident}|{runbook}"),
            };
            let again = json!({
                "type": "block_actions",
                "user": {"id": user},
                "actions": [{
                    "action_id": if *approve { "approve" } else { "reject" },
                    "value": value,
                }],
            });
            let body = slack_form(&again.to_string());
            assert_eq!(slack::interaction(body.as_bytes()), read);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// kubectl

const VERBS: [(&str, Verb); 12] = [
    ("get", Verb::Get),
    ("describe", Verb::Describe),
    ("logs", Verb::Logs),
    ("top", Verb::Top),
    ("rollout-history", Verb::RolloutHistory),
    ("rollout-status", Verb::RolloutStatus),
    ("rollout-undo", Verb::RolloutUndo),
    ("rollout-restart", Verb::RolloutRestart),
    ("scale", Verb::Scale),
    ("delete", Verb::Delete),
    ("cordon", Verb::Cordon),
    ("uncordon", Verb::Uncordon),
];

/// The flags a rendered call may carry; the host pins kubeconfig, context and timeout itself.
const CALL_FLAGS: [&str; 11] = [
    "--namespace=",
    "--selector=",
    "--output=",
    "--container=",
    "--tail=",
    "--previous",
    "--to-revision=",
    "--revision=",
    "--watch=false",
    "--replicas=",
    "--wait=false",
];

/// Kubernetes' resource kinds Quell knows (canonical plurals).
const RESOURCES: [&str; 16] = [
    "pods",
    "deployments",
    "replicasets",
    "statefulsets",
    "daemonsets",
    "services",
    "events",
    "configmaps",
    "jobs",
    "cronjobs",
    "ingresses",
    "endpoints",
    "persistentvolumeclaims",
    "horizontalpodautoscalers",
    "nodes",
    "namespaces",
];

/// A field: `~` (or a missing line) is `None`.
fn field(lines: &[Cow<'_, str>], index: usize) -> Option<String> {
    lines
        .get(index)
        .filter(|l| *l != "~")
        .map(|l| l.clone().into_owned())
}

fn number(lines: &[Cow<'_, str>], index: usize) -> Option<u32> {
    lines.get(index).and_then(|l| l.parse().ok())
}

/// The request a kubectl input describes: lines of verb, resource, namespace, name,
/// selector, output, tail lines, container, previous (`1`), to-revision and replicas.
fn kubectl_request(data: &[u8]) -> Request {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<Cow<'_, str>> = text.split('\n').map(Cow::Borrowed).collect();
    let verb_name = lines.first().map_or("", |l| l.as_ref());
    let verb = VERBS
        .iter()
        .find(|(name, _)| *name == verb_name)
        .map_or(VERBS[verb_name.len() % VERBS.len()].1, |(_, verb)| *verb);
    let output = match lines.get(5).map(|l| l.as_ref()) {
        Some("json") => Some(OutputFormat::Json),
        Some("yaml") => Some(OutputFormat::Yaml),
        Some("wide") => Some(OutputFormat::Wide),
        Some("name") => Some(OutputFormat::Name),
        _ => None,
    };
    Request {
        verb,
        resource: lines.get(1).map(|l| l.to_string()).unwrap_or_default(),
        namespace: field(&lines, 2),
        name: field(&lines, 3),
        selector: field(&lines, 4),
        options: Options {
            output,
            tail_lines: number(&lines, 6),
            container: field(&lines, 7),
            previous: lines.get(8).is_some_and(|l| l == "1"),
            to_revision: number(&lines, 9),
            replicas: number(&lines, 10),
        },
    }
}

/// Kubernetes' DNS-1123 label, written independently of the host's grammar.
fn oracle_label(value: &str) -> bool {
    let b = value.as_bytes();
    let inner = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-';
    let edge = |c: Option<&u8>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    (1..=63).contains(&b.len()) && b.iter().all(inner) && edge(b.first()) && edge(b.last())
}

fn oracle_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(oracle_label)
}

/// A kubectl request through `Call::parse` and `Call::args`, and its strings through the
/// grammar. The grammar agrees with an independent statement of the DNS-1123 rules; a
/// rendered argv holds no NUL, its verb words come first, every other element is the
/// resource, the name (or `kind/name`) or one of the call flags (so never `--kubeconfig`,
/// `--token`, `--server`, `--context`, `--as`, ...), no flag twice, the namespace is the
/// requested one, and the selector is the grammar's rendering, which renders to itself.
pub fn kubectl(data: &[u8]) {
    let req = kubectl_request(data);
    for text in [&req.namespace, &req.name, &req.options.container]
        .into_iter()
        .flatten()
    {
        assert_eq!(
            grammar::dns_label("x", text).is_ok(),
            oracle_label(text),
            "label {text:?}"
        );
        assert_eq!(
            grammar::dns_subdomain("x", text).is_ok(),
            oracle_subdomain(text),
            "subdomain {text:?}"
        );
    }
    let rendered_selector = req.selector.as_deref().map(grammar::label_selector);
    if let Some(Ok(rendered)) = &rendered_selector
        && rendered.len() <= 1024
    {
        assert_eq!(
            grammar::label_selector(rendered).as_ref(),
            Ok(rendered),
            "re-rendering {rendered:?}"
        );
    }
    let call = match Call::parse(&req) {
        Err(why) => {
            assert!(!why.is_empty());
            return;
        }
        Ok(call) => call,
    };
    let _ = call.to_string();
    let args = call.args();
    let words: Vec<String> = call
        .verb()
        .to_string()
        .split(' ')
        .map(str::to_owned)
        .collect();
    assert!(args.starts_with(&words), "{args:?}");
    let mut flags = BTreeMap::new();
    for arg in &args[words.len()..] {
        assert!(!arg.contains('\0'), "{args:?}");
        if arg.starts_with('-') {
            let flag = CALL_FLAGS
                .iter()
                .find(|f| arg.starts_with(*f))
                .unwrap_or_else(|| panic!("{arg:?} is not a call flag: {args:?}"));
            assert!(flags.insert(*flag, arg).is_none(), "{flag} twice: {args:?}");
        } else {
            let name = req.name.as_deref();
            let ok = RESOURCES.contains(&arg.as_str())
                || Some(arg.as_str()) == name
                || name.is_some_and(|n| arg.rsplit_once('/').is_some_and(|(_, a)| a == n));
            assert!(ok, "{arg:?} is neither resource nor name: {args:?}");
        }
    }
    if let Some(ns) = flags.get("--namespace=") {
        assert_eq!(Some(&ns["--namespace=".len()..]), req.namespace.as_deref());
        assert!(oracle_label(&ns["--namespace=".len()..]));
    }
    match (flags.get("--selector="), rendered_selector) {
        (Some(s), Some(Ok(rendered))) => assert_eq!(s["--selector=".len()..], rendered),
        (None, None) => {}
        (s, r) => panic!("selector {s:?} rendered from {r:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// SSRF guard

/// Not publicly routable, by the standard library's and the RFCs' own terms (independent of
/// the guard's tables).
fn oracle_non_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_private()
        || v4.is_loopback()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_documentation()
        || a == 0
        || a >= 240
        || (a == 100 && (64..128).contains(&b))
        || (a == 198 && (b == 18 || b == 19))
}

fn oracle_non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => oracle_non_public_v4(v4),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (s[0] == 0x2001 && s[1] == 0xdb8)
                || (s[0] & 0xffc0) == 0xfec0
        }
    }
}

/// The IPv4 addresses an IPv6 address can deliver to (mapped, translated, compatible, NAT64,
/// 6to4, Teredo server and client), written from the RFCs.
fn oracle_carried(v6: Ipv6Addr) -> Vec<Ipv4Addr> {
    let s = v6.segments();
    let o = v6.octets();
    let last = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    let mut carried = Vec::new();
    if s[..5] == [0; 5] && s[5] == 0xffff || s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        carried.push(last);
    }
    if s[..6] == [0; 6] && v6 > Ipv6Addr::from(1) {
        carried.push(last);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        carried.push(last);
    }
    if s[0] == 0x2002 {
        carried.push(Ipv4Addr::new(o[2], o[3], o[4], o[5]));
    }
    if s[0] == 0x2001 && s[1] == 0 {
        carried.push(Ipv4Addr::new(o[4], o[5], o[6], o[7]));
        carried.push(Ipv4Addr::new(!o[12], !o[13], !o[14], !o[15]));
    }
    carried
}

fn check_ip(ip: IpAddr, networks: &[IpNet]) {
    let kind = non_public_kind(ip);
    let real = canonical(ip);
    assert_eq!(
        canonical(real),
        real,
        "canonical({ip}) is not a fixed point"
    );
    if ip.is_ipv4() {
        assert_eq!(real, ip);
    }
    let refused = check_address(ip, &[]);
    assert_eq!(
        refused.is_err(),
        kind.is_some(),
        "{ip}: {refused:?} vs {kind:?}"
    );
    if kind.is_none() {
        assert!(
            !oracle_non_public(real),
            "{ip} (reaching {real}) passed as public"
        );
        assert!(!oracle_non_public(ip), "{ip} passed as public");
        if let IpAddr::V6(v6) = ip {
            for v4 in oracle_carried(v6) {
                assert!(!oracle_non_public_v4(v4), "{ip} carries {v4} and passed");
            }
        }
    } else if let Err(why) = &refused {
        assert!(why.contains(&ip.to_string()), "{why}");
    }
    // Naming the address (or the one it reaches) in the policy allows it.
    assert!(check_address(ip, &[IpNet::from(real)]).is_ok(), "{ip}");
    assert!(check_address(ip, &[IpNet::from(ip)]).is_ok(), "{ip}");
    // A network that contains neither refuses exactly what the empty list refuses.
    let outside = networks
        .iter()
        .all(|n| !n.contains(&ip) && !n.contains(&real));
    if outside {
        assert_eq!(check_address(ip, networks), refused);
    } else {
        assert!(check_address(ip, networks).is_ok());
    }
}

/// Addresses from the input's bytes (as IPv6 and IPv4, and that IPv4 in every IPv6 form that
/// carries one), from its text (an address, a CIDR, a URL's IP-literal host). An address
/// the guard calls public is public by the standard library's tests after canonicalisation,
/// and so is every IPv4 address it carries; `canonical` is a fixed point; naming the
/// address (or the one it reaches) allows it; a network containing neither changes nothing.
pub fn egress(data: &[u8]) {
    let mut b16 = [0u8; 16];
    for (slot, byte) in b16.iter_mut().zip(data) {
        *slot = *byte;
    }
    let v6 = Ipv6Addr::from(b16);
    let v4 = Ipv4Addr::new(b16[0], b16[1], b16[2], b16[3]);
    let prefix = data.get(16).copied().unwrap_or(128) % 129;
    let networks: Vec<IpNet> = IpNet::new(IpAddr::V6(v6), prefix)
        .into_iter()
        .chain(IpNet::new(IpAddr::V4(v4), prefix % 33))
        .map(|n| n.trunc())
        .collect();
    let [a, b, c, d] = v4.octets();
    let low = |prefix: Ipv6Addr| Ipv6Addr::from(u128::from(prefix) | u128::from(u32::from(v4)));
    let forms = [
        v4.to_ipv6_mapped(),
        low(Ipv6Addr::new(0, 0, 0, 0, 0xffff, 0, 0, 0)),
        low(Ipv6Addr::UNSPECIFIED),
        low(Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0)),
        low(Ipv6Addr::new(0x64, 0xff9b, 1, 0, 0, 0, 0, 0)),
        Ipv6Addr::from([0x20, 0x02, a, b, c, d, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]),
        Ipv6Addr::from([0x20, 1, 0, 0, a, b, c, d, 0, 0, 0, 0, !a, !b, !c, !d]),
    ];
    check_ip(IpAddr::V6(v6), &networks);
    check_ip(IpAddr::V4(v4), &networks);
    for form in forms {
        check_ip(IpAddr::V6(form), &networks);
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        check_ip(ip, &networks);
    }
    if let Ok(net) = text.parse::<IpNet>() {
        check_ip(net.addr(), &[net]);
    }
    if let Ok(url) = url::Url::parse(text) {
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            check_ip(ip, &networks);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ssh templates

/// A TOML basic string.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Undoes the single-quoting of a POSIX shell word: what the remote shell will pass.
fn shell_word(word: &str) -> Option<String> {
    let mut out = String::new();
    let mut rest = word;
    let safe = |c: char| c.is_ascii_alphanumeric() || "-_=/,.+".contains(c);
    if !rest.is_empty() && rest.chars().all(safe) {
        return Some(rest.to_owned());
    }
    while !rest.is_empty() {
        if let Some(quoted) = rest.strip_prefix('\'') {
            let end = quoted.find('\'')?;
            out.push_str(&quoted[..end]);
            rest = &quoted[end + 1..];
        } else if let Some(escaped) = rest.strip_prefix('\\') {
            let c = escaped.chars().next()?;
            out.push(c);
            rest = &escaped[c.len_utf8()..];
        } else {
            return None;
        }
    }
    (!word.is_empty()).then_some(out)
}

/// `run` on the first line, `name=regex` parameter declarations up to an empty line, then
/// `name=value` call parameters; the template goes through a whole policy's `[ssh.commands]`.
/// A rendered command is the template with each `{name}` replaced by its value quoted for
/// a POSIX shell (which reads back as exactly the value), and every value matches its
/// pattern (compiled here independently), has no control character and no leading `-`.
pub fn ssh(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let run = lines.next().unwrap_or_default();
    let mut declared = Vec::new();
    for l in lines.by_ref() {
        if l.is_empty() {
            break;
        }
        let (name, pattern) = l.split_once('=').unwrap_or((l, ""));
        declared.push((name.to_owned(), pattern.to_owned()));
    }
    let given: Vec<(String, String)> = lines
        .map(|l| {
            let (name, value) = l.split_once('=').unwrap_or((l, ""));
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let params: Vec<String> = declared
        .iter()
        .map(|(name, pattern)| format!("{} = {}", toml_string(name), toml_string(pattern)))
        .collect();
    let policy_text = format!(
        "[runbook]\nname = \"fuzz\"\ncomponent = \"fuzz.wasm\"\n[ssh]\nuser = \"remediator\"\n\
         hosts = [\"*.internal\"]\n[ssh.commands]\ncmd = {{ run = {}, params = {{ {} }}, \
         effect = \"write\" }}\n",
        toml_string(run),
        params.join(", ")
    );
    let Ok(policy) = Policy::parse(&policy_text) else {
        return;
    };
    let template = &policy
        .ssh
        .as_ref()
        .unwrap()
        .commands
        .values()
        .next()
        .unwrap();
    let Ok(line) = template.render("cmd", &given) else {
        return;
    };
    let patterns: BTreeMap<&str, regex::Regex> = declared
        .iter()
        .map(|(name, pattern)| {
            let regex = regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
                .size_limit(1 << 20)
                .build()
                .unwrap();
            (name.as_str(), regex)
        })
        .collect();
    let mut values = BTreeMap::new();
    for (name, value) in &given {
        let pattern = patterns
            .get(name.as_str())
            .unwrap_or_else(|| panic!("rendered with the undeclared parameter {name:?}: {line:?}"));
        assert!(
            pattern.is_match(value),
            "{name}={value:?} against {pattern}"
        );
        assert!(!value.starts_with('-') && !value.chars().any(char::is_control));
        let quoted = shell_escape::unix::escape(value.as_str().into());
        assert_eq!(shell_word(&quoted).as_deref(), Some(value.as_str()));
        values.insert(name.as_str(), quoted);
    }
    // The template with each `{name}` replaced, in order.
    let mut expected = String::new();
    let mut rest = run;
    while let Some(open) = rest.find('{') {
        let close = open + rest[open..].find('}').unwrap();
        expected.push_str(&rest[..open]);
        expected.push_str(&values[&rest[open + 1..close]]);
        rest = &rest[close + 1..];
    }
    expected.push_str(rest);
    assert_eq!(line, expected);
}

// ---------------------------------------------------------------------------------------------
// The stable mutation run

/// A small seeded mutator for the stable replay: byte flips, interesting bytes, inserts,
/// deletes, duplications and splices of corpus entries, reproducible from its seed.
#[derive(Debug, Clone)]
pub struct Mutator {
    state: u64,
}

/// Bytes that mean something to the parsers under test.
const INTERESTING: &[u8] = b"\0\n\r\t {}[]\"'\\,:=|!()/.-*~%&+0129azAZ\x7f\xff";

impl Mutator {
    /// A mutator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// SplitMix64.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// A mutant of one of `corpus`' entries (1 to 4 mutations), at most `max_len` bytes.
    pub fn mutate(&mut self, corpus: &[Vec<u8>], max_len: usize) -> Vec<u8> {
        let mut data = corpus
            .get(self.below(corpus.len()))
            .cloned()
            .unwrap_or_default();
        for _ in 0..1 + self.below(4) {
            let len = data.len();
            match self.below(7) {
                0 if len > 0 => {
                    let at = self.below(len);
                    data[at] ^= 1 << self.below(8);
                }
                1 if len > 0 => {
                    let at = self.below(len);
                    data[at] = INTERESTING[self.below(INTERESTING.len())];
                }
                2 => {
                    let at = self.below(len + 1);
                    let byte = if self.below(2) == 0 {
                        INTERESTING[self.below(INTERESTING.len())]
                    } else {
                        self.next_u64() as u8
                    };
                    data.insert(at, byte);
                }
                3 if len > 0 => {
                    let at = self.below(len);
                    let n = 1 + self.below((len - at).min(16));
                    data.drain(at..at + n);
                }
                4 if len > 0 => {
                    let at = self.below(len);
                    let n = 1 + self.below((len - at).min(32));
                    let chunk: Vec<u8> = data[at..at + n].to_vec();
                    let to = self.below(len + 1);
                    data.splice(to..to, chunk);
                }
                5 => {
                    let other = corpus.get(self.below(corpus.len())).cloned();
                    let other = other.unwrap_or_default();
                    let cut = self.below(len + 1);
                    let from = self.below(other.len() + 1);
                    data.truncate(cut);
                    data.extend_from_slice(&other[from..]);
                }
                _ if len > 0 => {
                    // Replace a byte with a nearby ASCII digit run: numbers are fields here.
                    let at = self.below(len);
                    let digits = format!("{}", self.next_u64() >> self.below(64));
                    data.splice(at..at + 1, digits.bytes());
                }
                _ => data.push(self.next_u64() as u8),
            }
        }
        data.truncate(max_len);
        data
    }
}
