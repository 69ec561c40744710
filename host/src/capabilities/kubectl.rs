//! The kubectl capability: structured requests rendered into argv for the real `kubectl`.
//!
//! The runbook never writes a flag. It names a verb, a resource, a namespace and a name or
//! selector; the host validates each against Kubernetes' own name rules (so nothing can
//! start with `-`), renders every value as one `--flag=value` argv element, and pins the
//! kubeconfig and context from the host configuration. Identity and cluster flags cannot be
//! expressed at all. The `[kubectl]` policy section itself is [`crate::policy::kubectl`].

pub mod grammar;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{
    CallContext, Capability, Rendered, Target, Verdict, process, refuse_oversized, run_command,
};
use crate::bindings::quell::runbook::kubectl::{Host, OutputFormat, Request, Verb as WitVerb};
use crate::bindings::quell::runbook::types::{CommandOutput, HostError};
use crate::config::KubectlConfig;
use crate::policy::kubectl::{KubectlPolicy, Resource, Verb};
use crate::syntax::Glob;

impl Verb {
    fn from_wit(verb: WitVerb) -> Self {
        match verb {
            WitVerb::Get => Self::Get,
            WitVerb::Describe => Self::Describe,
            WitVerb::Logs => Self::Logs,
            WitVerb::Top => Self::Top,
            WitVerb::RolloutHistory => Self::RolloutHistory,
            WitVerb::RolloutStatus => Self::RolloutStatus,
            WitVerb::RolloutUndo => Self::RolloutUndo,
            WitVerb::RolloutRestart => Self::RolloutRestart,
            WitVerb::Scale => Self::Scale,
            WitVerb::Delete => Self::Delete,
            WitVerb::Cordon => Self::Cordon,
            WitVerb::Uncordon => Self::Uncordon,
        }
    }
}

/// A request after validation: every field is safe to render into argv.
#[derive(Debug, Clone)]
pub struct Call {
    verb: Verb,
    resource: Resource,
    namespace: Option<String>,
    name: Option<String>,
    selector: Option<String>,
    field_selector: Option<String>,
    extra: Vec<String>,
}

impl Call {
    /// Validates a guest request. The error says what is wrong with it.
    pub fn parse(req: &Request) -> Result<Self, String> {
        let verb = Verb::from_wit(req.verb);
        let resource = Resource::parse(&req.resource)?;
        if let Some(ns) = &req.namespace {
            grammar::dns_label("namespace", ns)?;
        }
        if let Some(name) = &req.name {
            // A namespace's own name is a label; other objects' names are subdomains.
            if resource.name() == "namespaces" {
                grammar::dns_label("name", name)?;
            } else {
                grammar::dns_subdomain("name", name)?;
            }
        }
        let selector = req
            .selector
            .as_deref()
            .map(grammar::label_selector)
            .transpose()?;
        let namespace =
            if resource.namespaced() {
                Some(req.namespace.clone().ok_or_else(|| {
                    format!("{} are namespaced: set a namespace", resource.name())
                })?)
            } else {
                None
            };
        let needs = |what: &str, ok: bool| {
            ok.then_some(())
                .ok_or_else(|| format!("{verb} needs {what}"))
        };
        let allowed_kinds = |kinds: &[&str]| {
            kinds
                .contains(&resource.name())
                .then_some(())
                .ok_or_else(|| {
                    format!(
                        "{verb} works on {}, not {}",
                        kinds.join(", "),
                        resource.name()
                    )
                })
        };
        let opts = &req.options;
        let mut extra = Vec::new();
        match verb {
            Verb::Get | Verb::Describe => {
                if let Some(format) = opts.output.filter(|_| verb == Verb::Get) {
                    let format = match format {
                        OutputFormat::Json => "json",
                        OutputFormat::Yaml => "yaml",
                        OutputFormat::Wide => "wide",
                        OutputFormat::Name => "name",
                    };
                    extra.push(format!("--output={format}"));
                }
            }
            Verb::Logs => {
                allowed_kinds(&["pods"])?;
                needs(
                    "a pod name or a selector",
                    req.name.is_some() || req.selector.is_some(),
                )?;
                if let Some(container) = &opts.container {
                    grammar::dns_label("container", container)?;
                    extra.push(format!("--container={container}"));
                }
                if let Some(tail) = opts.tail_lines {
                    extra.push(format!("--tail={}", tail.min(100_000)));
                }
                if opts.previous {
                    extra.push("--previous".to_owned());
                }
            }
            Verb::Top => allowed_kinds(&["pods", "nodes"])?,
            Verb::RolloutHistory
            | Verb::RolloutStatus
            | Verb::RolloutUndo
            | Verb::RolloutRestart => {
                allowed_kinds(&["deployments", "statefulsets", "daemonsets"])?;
                needs("a name", req.name.is_some() && req.selector.is_none())?;
                match (verb, opts.to_revision) {
                    (Verb::RolloutUndo, Some(rev)) => extra.push(format!("--to-revision={rev}")),
                    (Verb::RolloutHistory, Some(rev)) => extra.push(format!("--revision={rev}")),
                    (Verb::RolloutStatus, _) => extra.push("--watch=false".to_owned()),
                    _ => {}
                }
            }
            Verb::Scale => {
                allowed_kinds(&["deployments", "statefulsets", "replicasets"])?;
                needs("a name", req.name.is_some() && req.selector.is_none())?;
                let replicas = opts
                    .replicas
                    .ok_or_else(|| "scale needs replicas".to_owned())?;
                extra.push(format!("--replicas={}", replicas.min(10_000)));
            }
            Verb::Delete => {
                needs(
                    "a name (bulk deletes by selector are not offered)",
                    req.name.is_some() && req.selector.is_none(),
                )?;
                extra.push("--wait=false".to_owned());
            }
            Verb::Cordon | Verb::Uncordon => {
                allowed_kinds(&["nodes"])?;
                needs("a name", req.name.is_some() && req.selector.is_none())?;
            }
        }
        Ok(Self {
            verb,
            resource,
            namespace,
            name: req.name.clone(),
            selector,
            field_selector: None,
            extra,
        })
    }

    /// A request with a field selector (`run-selected`): `get` only.
    pub fn parse_selected(req: &Request, field_selector: &str) -> Result<Self, String> {
        let mut call = Self::parse(req)?;
        if call.verb != Verb::Get {
            return Err(format!(
                "a field selector applies to get, not {}",
                call.verb
            ));
        }
        call.field_selector = Some(grammar::field_selector(field_selector)?);
        Ok(call)
    }

    /// The verb.
    pub fn verb(&self) -> Verb {
        self.verb
    }

    /// The object the call acts on: `deployment/api in production`. Every write names one.
    pub fn target(&self) -> Target {
        let name = self.name.as_deref().unwrap_or("*");
        let mut shown = format!("{}/{name}", self.resource.singular());
        if let Some(ns) = &self.namespace {
            shown.push_str(&format!(" in {ns}"));
        }
        Target {
            key: format!(
                "kubectl {}/{}/{name}",
                self.resource.name(),
                self.namespace.as_deref().unwrap_or("")
            ),
            shown,
        }
    }

    /// The argv after the binary and the pinned flags.
    pub fn args(&self) -> Vec<String> {
        let mut args: Vec<String> = self.verb.words().iter().map(|w| (*w).to_owned()).collect();
        let rollout_style = matches!(
            self.verb,
            Verb::RolloutHistory
                | Verb::RolloutStatus
                | Verb::RolloutUndo
                | Verb::RolloutRestart
                | Verb::Scale
        );
        match (&self.name, rollout_style) {
            (Some(name), true) => args.push(format!("{}/{name}", self.resource.singular())),
            (Some(name), false)
                if matches!(self.verb, Verb::Logs | Verb::Cordon | Verb::Uncordon) =>
            {
                args.push(name.clone())
            }
            (name, _) => {
                if self.verb != Verb::Logs {
                    args.push(self.resource.name().to_owned());
                }
                args.extend(name.clone());
            }
        }
        if let Some(ns) = &self.namespace {
            args.push(format!("--namespace={ns}"));
        }
        if let Some(selector) = &self.selector {
            args.push(format!("--selector={selector}"));
        }
        if let Some(fields) = &self.field_selector {
            args.push(format!("--field-selector={fields}"));
        }
        args.extend(self.extra.iter().cloned());
        args
    }
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} on {}", self.verb.to_string(), self.resource.name())?;
        if let Some(name) = &self.name {
            write!(f, " {name:?}")?;
        }
        if let Some(selector) = &self.selector {
            write!(f, " selected by {selector:?}")?;
        }
        if let Some(fields) = &self.field_selector {
            write!(f, " with fields {fields:?}")?;
        }
        if let Some(ns) = &self.namespace {
            write!(f, " in namespace {ns:?}")?;
        }
        Ok(())
    }
}

/// Whether the rule's namespace globs cover the call. For the `namespaces` resource itself the
/// object is a namespace, so its name is what the globs must cover; listing all namespaces
/// needs a `"*"`. Other cluster-scoped resources (nodes) are not namespaced.
fn in_namespaces(call: &Call, namespaces: &[Glob]) -> bool {
    let covers = |ns: &str| namespaces.iter().any(|g| g.is_match(ns));
    match (&call.namespace, call.resource.name()) {
        (Some(ns), _) => covers(ns),
        (None, "namespaces") => call
            .name
            .as_deref()
            .map_or_else(|| namespaces.iter().any(|g| g.as_str() == "*"), covers),
        (None, _) => true,
    }
}

impl KubectlPolicy {
    /// The rule that allows `call`, or a refusal that says what rule would.
    pub fn check(&self, call: &Call) -> Result<String, String> {
        let allowing = self.allow.iter().enumerate().find(|(_, rule)| {
            rule.verbs.contains(&call.verb)
                && rule.resources.contains(&call.resource)
                && in_namespaces(call, &rule.namespaces)
                && rule.names.as_ref().is_none_or(|names| {
                    call.name
                        .as_ref()
                        .is_some_and(|name| names.iter().any(|g| g.is_match(name)))
                })
        });
        match allowing {
            Some((index, _)) => Ok(format!("[[kubectl.allow]] #{}", index + 1)),
            None => {
                let mut hint = format!(
                    "verbs = [{:?}], resources = [{:?}]",
                    call.verb.to_string(),
                    call.resource.name()
                );
                if let Some(ns) = &call.namespace {
                    hint.push_str(&format!(", namespaces = [{ns:?}]"));
                }
                Err(format!(
                    "no [[kubectl.allow]] rule allows {call}; a rule with {hint} would"
                ))
            }
        }
    }
}

/// The host side: where kubectl is and which cluster it talks to.
#[derive(Debug)]
pub struct KubectlCap {
    binary: PathBuf,
    pinned: Vec<OsString>,
    home: PathBuf,
    config: KubectlConfig,
}

impl KubectlCap {
    /// Resolves the binary and renders the pinned flags.
    pub fn new(config: &KubectlConfig, home: &Path) -> anyhow::Result<Self> {
        // A missing kubectl is not fatal at start-up: runbooks without kubectl still work,
        // and calls fail with a clear message.
        let binary =
            process::resolve_binary(&config.binary).unwrap_or_else(|_| config.binary.clone());
        let mut pinned: Vec<OsString> = Vec::new();
        if let Some(kubeconfig) = &config.kubeconfig {
            let mut flag = OsString::from("--kubeconfig=");
            flag.push(kubeconfig);
            pinned.push(flag);
        }
        if let Some(context) = &config.context {
            pinned.push(format!("--context={context}").into());
        }
        pinned.push(format!("--request-timeout={}s", config.timeout.0.as_secs().max(1)).into());
        Ok(Self {
            binary,
            pinned,
            home: home.to_owned(),
            config: config.clone(),
        })
    }

    fn spec(&self, call: &Call) -> process::Spec {
        let mut args = self.pinned.clone();
        args.extend(call.args().into_iter().map(OsString::from));
        process::Spec {
            program: self.binary.clone(),
            args,
            env: vec![
                ("PATH", "/usr/local/bin:/usr/bin:/bin".into()),
                ("HOME", self.home.clone().into_os_string()),
                ("LANG", "C.UTF-8".into()),
            ],
            timeout: self.config.timeout.0,
            output_cap: self.config.output_cap.as_usize(),
        }
    }
}

impl Host for CallContext {
    async fn run(&mut self, req: Request) -> Result<CommandOutput, HostError> {
        run_kubectl(self, req, None).await
    }

    async fn run_selected(
        &mut self,
        req: Request,
        field_selector: String,
    ) -> Result<CommandOutput, HostError> {
        run_kubectl(self, req, Some(field_selector)).await
    }
}

/// `run` and `run-selected`: validate, check the policy, run (or record, or refuse).
async fn run_kubectl(
    ctx: &mut CallContext,
    req: Request,
    field_selector: Option<String>,
) -> Result<CommandOutput, HostError> {
    let texts = [
        &req.namespace,
        &req.name,
        &req.selector,
        &req.options.container,
        &field_selector,
    ];
    let bytes = req.resource.len()
        + texts
            .iter()
            .filter_map(|t| t.as_ref())
            .map(String::len)
            .sum::<usize>();
    if let Some(refused) = refuse_oversized(ctx, Capability::Kubectl, bytes) {
        return refused;
    }
    let mut request =
        serde_json::to_value(&req).unwrap_or_else(|e| json!({ "unserialisable": e.to_string() }));
    // Only when given: a request without one records (and replays) as it always did.
    if let Some(fields) = &field_selector {
        request["field_selector"] = json!(fields);
    }
    let parsed = match &field_selector {
        Some(fields) => Call::parse_selected(&req, fields),
        None => Call::parse(&req),
    };
    let (verdict, spec) = match parsed {
        Err(reason) => (
            Verdict::Deny(format!("invalid kubectl request: {reason}")),
            None,
        ),
        Ok(call) => {
            let verdict = ctx.gate(call.verb().effect(), ctx.policy.kubectl.check(&call));
            let spec = (!matches!(verdict, Verdict::Deny(_))).then(|| Rendered {
                spec: ctx.caps.kubectl.spec(&call),
                // A dry run shows the request, not the host's kubeconfig or context.
                shown: format!("kubectl {}", call.args().join(" ")),
                target: call.target(),
            });
            (verdict, spec)
        }
    };
    run_command(ctx, Capability::Kubectl, request, verdict, spec).await
}

#[cfg(test)]
mod tests;
