//! The ssh capability: named command templates run on allow-listed hosts by the real `ssh`.
//!
//! The runbook names a host, a command id from its policy and typed parameters. The host
//! checks the host against the allow-list, each parameter against its pattern, quotes every
//! parameter for the remote shell itself and runs `ssh` with batch mode, strict host-key
//! checking against a Quell-managed known_hosts file and no user configuration. The `[ssh]`
//! policy section and its command templates are [`crate::policy::ssh`].

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::{
    CallContext, Capability, Rendered, Target, Verdict, process, refuse_oversized, run_command,
};
use crate::bindings::quell::runbook::ssh::Host;
use crate::bindings::quell::runbook::types::{CommandOutput, HostError};
use crate::config::SshConfig;
use crate::policy::Effect;
use crate::policy::ssh::SshPolicy;

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
        let bytes = host.len()
            + command.len()
            + params.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if let Some(refused) = refuse_oversized(self, Capability::Ssh, bytes) {
            return refused;
        }
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
                let spec = (!matches!(verdict, Verdict::Deny(_))).then(|| Rendered {
                    spec: self.caps.ssh.spec(&user, &host, &line),
                    shown: format!("ssh {user}@{host} {line}"),
                    // One lock per host and command template, whatever its parameters.
                    target: Target {
                        key: format!("ssh {host} {command}"),
                        shown: format!("{command} on {host}"),
                    },
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
}
