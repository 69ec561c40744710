//! The ssh capability: named command templates run on allow-listed hosts by the real `ssh`.
//!
//! The runbook names a host, a command id from its policy and typed parameters. The host
//! checks the host against the allow-list, each parameter against its pattern, quotes every
//! parameter for the remote shell itself and runs `ssh` with batch mode, strict host-key
//! checking against a Quell-managed known_hosts file and no user configuration.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::json;

use super::{CallContext, Capability, Effect, Verdict, process, run_command};
use crate::bindings::quell::runbook::ssh::Host;
use crate::bindings::quell::runbook::types::{CommandOutput, HostError};
use crate::config::SshConfig;
use crate::policy::{AnchoredRegex, HostPattern, Identifier};

/// `[ssh]` in a policy.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshPolicy {
    /// The remote account.
    pub user: SshUser,
    /// Host name globs and CIDRs the runbook may reach.
    #[serde(default)]
    pub hosts: Vec<HostPattern>,
    /// The commands the runbook may run, by id.
    #[serde(default)]
    pub commands: BTreeMap<Identifier, CommandTemplate>,
}

/// A POSIX user name.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "String")]
pub struct SshUser(String);

impl TryFrom<String> for SshUser {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        let ok = !text.is_empty()
            && text.len() <= 32
            && text.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        ok.then(|| Self(text.clone()))
            .ok_or_else(|| format!("invalid ssh user {text:?}"))
    }
}

/// `id = { run = "…{param}…", params = { param = "regex" }, effect = "write" }`
#[derive(Debug, Deserialize)]
#[serde(try_from = "RawTemplate")]
pub struct CommandTemplate {
    parts: Vec<Part>,
    params: BTreeMap<String, AnchoredRegex>,
    /// Whether the command only reads.
    pub effect: Effect,
}

#[derive(Debug)]
enum Part {
    Text(String),
    Param(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    run: String,
    #[serde(default)]
    params: BTreeMap<String, AnchoredRegex>,
    effect: Effect,
}

impl TryFrom<RawTemplate> for CommandTemplate {
    type Error = String;

    fn try_from(raw: RawTemplate) -> Result<Self, Self::Error> {
        let mut parts = Vec::new();
        let mut rest = raw.run.as_str();
        let mut quotes = QuoteState::default();
        while let Some(open) = rest.find('{') {
            quotes.scan(&rest[..open]);
            if quotes.inside() {
                return Err(format!(
                    "command {:?} puts a parameter inside quotes; the host quotes parameters itself",
                    raw.run
                ));
            }
            let close = rest[open..]
                .find('}')
                .map(|i| open + i)
                .ok_or_else(|| format!("unclosed '{{' in command {:?}", raw.run))?;
            let name = &rest[open + 1..close];
            if !raw.params.contains_key(name) {
                return Err(format!(
                    "command {:?} uses {{{name}}} but params has no pattern for {name:?}",
                    raw.run
                ));
            }
            parts.push(Part::Text(rest[..open].to_owned()));
            parts.push(Part::Param(name.to_owned()));
            rest = &rest[close + 1..];
        }
        parts.push(Part::Text(rest.to_owned()));
        for name in raw.params.keys() {
            if !parts
                .iter()
                .any(|p| matches!(p, Part::Param(n) if n == name))
            {
                return Err(format!(
                    "param {name:?} is declared but {:?} never uses it",
                    raw.run
                ));
            }
        }
        if raw.run.trim().is_empty() {
            return Err("empty command".to_owned());
        }
        Ok(Self {
            parts,
            params: raw.params,
            effect: raw.effect,
        })
    }
}

/// Whether a position in a shell command line is inside single or double quotes.
#[derive(Default)]
struct QuoteState {
    single: bool,
    double: bool,
    escaped: bool,
}

impl QuoteState {
    fn scan(&mut self, text: &str) {
        for c in text.chars() {
            match c {
                _ if self.escaped => self.escaped = false,
                '\\' if !self.single => self.escaped = true,
                '\'' if !self.double => self.single = !self.single,
                '"' if !self.single => self.double = !self.double,
                _ => {}
            }
        }
    }

    fn inside(&self) -> bool {
        self.single || self.double
    }
}

impl CommandTemplate {
    /// Renders the remote command line, each parameter validated and shell-quoted.
    fn render(&self, id: &str, params: &[(String, String)]) -> Result<String, String> {
        let mut given = BTreeMap::new();
        for (name, value) in params {
            let pattern = self
                .params
                .get(name)
                .ok_or_else(|| format!("command {id:?} takes no parameter {name:?}"))?;
            // A value starting with '-' would be read as an option by the remote command,
            // quoting or not.
            if value.chars().any(char::is_control)
                || value.starts_with('-')
                || !pattern.is_match(value)
            {
                return Err(format!(
                    "parameter {name}={value:?} of command {id:?} does not match its pattern {:?}",
                    pattern.as_str()
                ));
            }
            given.insert(name.as_str(), value.as_str());
        }
        let mut line = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => line.push_str(text),
                Part::Param(name) => {
                    let value = given
                        .get(name.as_str())
                        .ok_or_else(|| format!("command {id:?} needs parameter {name:?}"))?;
                    line.push_str(&shell_escape::unix::escape((*value).into()));
                }
            }
        }
        Ok(line)
    }
}

fn valid_host(host: &str) -> Result<(), String> {
    let ok = !host.is_empty()
        && host.len() <= 253
        && !host.starts_with('-')
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == ':');
    ok.then_some(())
        .ok_or_else(|| format!("invalid host {host:?}"))
}

impl SshPolicy {
    /// Checks host, command and parameters; returns the allowing rule and the remote command.
    fn check(
        &self,
        host: &str,
        command: &str,
        params: &[(String, String)],
    ) -> Result<(String, Effect, String), String> {
        valid_host(host)?;
        if !self.hosts.iter().any(|pattern| pattern.covers(host)) {
            return Err(format!(
                "host {host:?} is not in [ssh] hosts; add a pattern that covers it"
            ));
        }
        let (id, template) = self
            .commands
            .iter()
            .find(|(id, _)| id.as_str() == command)
            .ok_or_else(|| format!("no command {command:?} in [ssh.commands]; add {command} = {{ run = \"…\", effect = \"read\" }}"))?;
        let line = template.render(id.as_str(), params)?;
        Ok((format!("[ssh.commands] {id}"), template.effect, line))
    }
}

/// The host side: the ssh binary, key and known_hosts.
#[derive(Debug)]
pub struct SshCap {
    binary: PathBuf,
    home: PathBuf,
    config: SshConfig,
}

impl SshCap {
    /// Resolves the binary.
    pub fn new(config: &SshConfig, home: &Path) -> anyhow::Result<Self> {
        let binary =
            process::resolve_binary(&config.binary).unwrap_or_else(|_| config.binary.clone());
        Ok(Self {
            binary,
            home: home.to_owned(),
            config: config.clone(),
        })
    }

    fn spec(&self, user: &str, host: &str, remote: &str) -> process::Spec {
        let option = |o: String| [OsString::from("-o"), OsString::from(o)];
        let mut args: Vec<OsString> = vec!["-F".into(), "/dev/null".into(), "-T".into()];
        args.extend(option("BatchMode=yes".into()));
        args.extend(option("StrictHostKeyChecking=yes".into()));
        args.extend(option(format!(
            "UserKnownHostsFile={}",
            self.config.known_hosts.display()
        )));
        args.extend(option("GlobalKnownHostsFile=/dev/null".into()));
        args.extend(option("IdentitiesOnly=yes".into()));
        args.extend(option(format!(
            "ConnectTimeout={}",
            self.config.connect_timeout.0.as_secs().max(1)
        )));
        args.extend(option("ServerAliveInterval=5".into()));
        args.extend(option("ServerAliveCountMax=3".into()));
        args.extend(option("ForwardAgent=no".into()));
        args.extend(option("ClearAllForwardings=yes".into()));
        args.extend(option("LogLevel=ERROR".into()));
        if let Some(identity) = &self.config.identity {
            args.push("-i".into());
            args.push(identity.clone().into_os_string());
        }
        args.extend([
            "-p".into(),
            self.config.port.to_string().into(),
            "-l".into(),
            user.into(),
        ]);
        args.extend(["--".into(), host.into(), remote.into()]);
        process::Spec {
            program: self.binary.clone(),
            args,
            env: vec![
                ("PATH", "/usr/bin:/bin".into()),
                ("HOME", self.home.clone().into_os_string()),
            ],
            timeout: self.config.timeout.0,
            output_cap: self.config.output_cap.as_usize(),
        }
    }
}

impl Host for CallContext {
    async fn run(
        &mut self,
        host: String,
        command: String,
        params: Vec<(String, String)>,
    ) -> Result<CommandOutput, HostError> {
        let request = json!({ "host": host, "command": command, "params": params });
        let checked = match &self.policy.ssh {
            None => Err("the policy has no [ssh] section".to_owned()),
            Some(policy) => policy
                .check(&host, &command, &params)
                .map(|ok| (policy.user.0.clone(), ok)),
        };
        let (verdict, spec) = match checked {
            Err(reason) => (Verdict::Deny(reason), None),
            Ok((user, (rule, effect, line))) => {
                let verdict = self.gate(effect, Ok(rule));
                // Like kubectl: no command is rendered for a refused call.
                let spec = (!matches!(verdict, Verdict::Deny(_))).then(|| {
                    let shown = format!("ssh {user}@{host} {line}");
                    (self.caps.ssh.spec(&user, &host, &line), shown)
                });
                (verdict, spec)
            }
        };
        run_command(self, Capability::Ssh, request, verdict, spec).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(text: &str) -> SshPolicy {
        toml::from_str(text).unwrap()
    }

    const POLICY: &str = r#"
user = "remediator"
hosts = ["*.internal", "10.0.0.0/8"]
[commands]
clean-tmp = { run = "find /tmp -type f -mtime +7 -delete", effect = "write" }
vacuum-journal = { run = "journalctl --vacuum-time={days}d", params = { days = "[0-9]{1,3}" }, effect = "write" }
"#;

    #[test]
    fn parameters_are_validated_and_quoted() {
        let p = policy(POLICY);
        let params = vec![("days".to_owned(), "3".to_owned())];
        let (rule, effect, line) = p.check("db.internal", "vacuum-journal", &params).unwrap();
        assert_eq!(rule, "[ssh.commands] vacuum-journal");
        assert_eq!(effect, Effect::Write);
        assert_eq!(line, "journalctl --vacuum-time=3d");
    }

    #[test]
    fn shell_metacharacters_in_parameters_are_refused() {
        let p = policy(POLICY);
        for evil in ["3; rm -rf /", "3$(reboot)", "3`id`", "3\nreboot", "3 && id"] {
            let params = vec![("days".to_owned(), evil.to_owned())];
            let err = p
                .check("db.internal", "vacuum-journal", &params)
                .unwrap_err();
            assert!(
                err.contains("does not match its pattern"),
                "{evil:?}: {err}"
            );
        }
    }

    #[test]
    fn hosts_and_commands_outside_the_policy_are_refused() {
        let p = policy(POLICY);
        assert!(
            p.check("evil.example.com", "clean-tmp", &[])
                .unwrap_err()
                .contains("not in [ssh] hosts")
        );
        assert!(
            p.check("-oProxyCommand=id", "clean-tmp", &[])
                .unwrap_err()
                .contains("invalid host")
        );
        assert!(
            p.check("10.1.1.1", "rm-rf", &[])
                .unwrap_err()
                .contains("no command \"rm-rf\"")
        );
        assert!(
            p.check("10.1.1.1", "clean-tmp", &[("x".into(), "1".into())])
                .unwrap_err()
                .contains("takes no parameter")
        );
        assert!(
            p.check("10.1.1.1", "vacuum-journal", &[])
                .unwrap_err()
                .contains("needs parameter")
        );
    }

    #[test]
    fn parameters_inside_quotes_are_refused_at_load() {
        for run in ["sh -c 'rm {p}'", "echo \"{p}\"", "echo 'a' \"b {p}\""] {
            let text = format!(
                "user = \"u\"\n[commands]\nx = {{ run = {run:?}, params = {{ p = \"[a-z]+\" }}, effect = \"write\" }}\n"
            );
            let err = toml::from_str::<SshPolicy>(&text).unwrap_err();
            assert!(err.message().contains("inside quotes"), "{run}: {err}");
        }
        let ok = "user = \"u\"\n[commands]\nx = { run = \"find /var/log -name '*.gz' -mtime +{d} -delete\", params = { d = \"[0-9]+\" }, effect = \"write\" }\n";
        assert!(toml::from_str::<SshPolicy>(ok).is_ok());
    }

    #[test]
    fn templates_with_undeclared_params_are_refused_at_load() {
        let err = toml::from_str::<SshPolicy>(
            "user = \"u\"\n[commands]\nx = { run = \"rm {path}\", effect = \"write\" }\n",
        )
        .unwrap_err();
        assert!(
            err.message()
                .contains("uses {path} but params has no pattern"),
            "{err}"
        );
    }
}
