//! `[kubectl]` in a policy: which verbs on which resources in which namespaces.
//!
//! Enforced by the kubectl capability, which checks each validated call against these rules.

use std::fmt;

use serde::Deserialize;

use super::Effect;
use crate::syntax::Glob;

/// `[kubectl]` in a policy.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubectlPolicy {
    /// Each rule allows its verbs on its resources in its namespaces.
    #[serde(default)]
    pub allow: Vec<KubectlRule>,
}

/// One `[[kubectl.allow]]` rule.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KubectlRule {
    /// `get`, `rollout undo`, …
    pub verbs: Vec<Verb>,
    /// `pods`, `deployments`, … (canonical plural names; aliases accepted).
    pub resources: Vec<Resource>,
    /// Namespace globs; ignored for cluster-scoped resources such as nodes.
    #[serde(default)]
    pub namespaces: Vec<Glob>,
    /// Optional object-name globs; when present, a request must name a matching object.
    #[serde(default)]
    pub names: Option<Vec<Glob>>,
}

/// A kubectl verb as written in policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Verb {
    #[serde(rename = "get")]
    Get,
    #[serde(rename = "describe")]
    Describe,
    #[serde(rename = "logs")]
    Logs,
    #[serde(rename = "top")]
    Top,
    #[serde(rename = "rollout history")]
    RolloutHistory,
    #[serde(rename = "rollout status")]
    RolloutStatus,
    #[serde(rename = "rollout undo")]
    RolloutUndo,
    #[serde(rename = "rollout restart")]
    RolloutRestart,
    #[serde(rename = "scale")]
    Scale,
    #[serde(rename = "delete")]
    Delete,
    #[serde(rename = "cordon")]
    Cordon,
    #[serde(rename = "uncordon")]
    Uncordon,
}

impl Verb {
    /// Reads are `get/describe/logs/top/rollout history/rollout status`; the rest write.
    pub fn effect(self) -> Effect {
        match self {
            Self::Get
            | Self::Describe
            | Self::Logs
            | Self::Top
            | Self::RolloutHistory
            | Self::RolloutStatus => Effect::Read,
            _ => Effect::Write,
        }
    }

    /// The words kubectl takes for the verb (`rollout undo` is two).
    pub(crate) fn words(self) -> &'static [&'static str] {
        match self {
            Self::Get => &["get"],
            Self::Describe => &["describe"],
            Self::Logs => &["logs"],
            Self::Top => &["top"],
            Self::RolloutHistory => &["rollout", "history"],
            Self::RolloutStatus => &["rollout", "status"],
            Self::RolloutUndo => &["rollout", "undo"],
            Self::RolloutRestart => &["rollout", "restart"],
            Self::Scale => &["scale"],
            Self::Delete => &["delete"],
            Self::Cordon => &["cordon"],
            Self::Uncordon => &["uncordon"],
        }
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.words().join(" "))
    }
}

/// The resource kinds Quell knows, with kubectl's short names as aliases.
const RESOURCES: &[(&str, &[&str], bool)] = &[
    // (canonical, aliases, namespaced)
    ("pods", &["pod", "po"], true),
    ("deployments", &["deployment", "deploy"], true),
    ("replicasets", &["replicaset", "rs"], true),
    ("statefulsets", &["statefulset", "sts"], true),
    ("daemonsets", &["daemonset", "ds"], true),
    ("services", &["service", "svc"], true),
    ("events", &["event", "ev"], true),
    ("configmaps", &["configmap", "cm"], true),
    ("jobs", &["job"], true),
    ("cronjobs", &["cronjob", "cj"], true),
    ("ingresses", &["ingress", "ing"], true),
    ("endpoints", &["ep"], true),
    (
        "persistentvolumeclaims",
        &["persistentvolumeclaim", "pvc"],
        true,
    ),
    (
        "horizontalpodautoscalers",
        &["horizontalpodautoscaler", "hpa"],
        true,
    ),
    ("nodes", &["node", "no"], false),
    ("namespaces", &["namespace", "ns"], false),
];

/// A known resource kind, by its canonical plural name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resource(&'static str, bool);

impl<'de> Deserialize<'de> for Resource {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl Resource {
    /// The resource a name or kubectl alias (any case) means.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let lower = text.to_ascii_lowercase();
        RESOURCES
            .iter()
            .find(|(canonical, aliases, _)| {
                *canonical == lower || aliases.contains(&lower.as_str())
            })
            .map(|(canonical, _, namespaced)| Self(canonical, *namespaced))
            .ok_or_else(|| {
                let known: Vec<_> = RESOURCES.iter().map(|(c, ..)| *c).collect();
                format!("unknown resource {text:?}; known: {}", known.join(", "))
            })
    }

    /// The canonical plural name.
    pub fn name(self) -> &'static str {
        self.0
    }

    /// Whether objects of this kind live in a namespace.
    pub(crate) fn namespaced(self) -> bool {
        self.1
    }

    /// The singular form used in `kind/name` arguments.
    pub(crate) fn singular(self) -> &'static str {
        RESOURCES
            .iter()
            .find(|(c, ..)| *c == self.0)
            .and_then(|(_, aliases, _)| aliases.first().copied())
            .unwrap_or(self.0)
    }
}
