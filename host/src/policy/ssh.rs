//! `[ssh]` in a policy: the remote user, the hosts a runbook may reach and its named command
//! templates. Templates are checked when the policy loads: every `{param}` has a pattern, is
//! used, and sits outside quotes, since the host quotes parameters itself.
//!
//! Enforced by the ssh capability, which checks each call's host and command against this
//! section and renders the template.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::Effect;
use crate::syntax::{AnchoredRegex, HostPattern, Identifier};

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
pub struct SshUser(pub(crate) String);

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
    pub fn render(&self, id: &str, params: &[(String, String)]) -> Result<String, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

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
