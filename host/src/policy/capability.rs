//! What a policy grants: the capabilities a runbook may import, and whether an operation
//! only reads or may change something.

use std::fmt;

/// The capabilities a runbook may import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Capability {
    /// `quell:runbook/kubectl`
    Kubectl,
    /// `quell:runbook/ssh`
    Ssh,
    /// `quell:runbook/http`
    Http,
    /// `quell:runbook/timeline`: always granted.
    Timeline,
}

impl Capability {
    /// Every capability, in the order of the WIT world.
    pub const ALL: [Self; 4] = [Self::Kubectl, Self::Ssh, Self::Http, Self::Timeline];

    /// The name used in policies, audit records and the WIT interface.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kubectl => "kubectl",
            Self::Ssh => "ssh",
            Self::Http => "http",
            Self::Timeline => "timeline",
        }
    }

    /// The policy section that grants it.
    pub fn section(self) -> &'static str {
        match self {
            Self::Kubectl => "[[kubectl.allow]]",
            Self::Ssh => "[ssh] with hosts and [ssh.commands]",
            Self::Http => "[[http.allow]]",
            Self::Timeline => "nothing (always granted)",
        }
    }

    /// The capability a WIT import name (`quell:runbook/kubectl@0.1.0`) refers to.
    pub fn from_import(import: &str) -> Option<Self> {
        let interface = import.strip_prefix("quell:runbook/")?;
        let interface = interface.split('@').next()?;
        Self::ALL.into_iter().find(|c| c.name() == interface)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether an operation only reads or may change something. Decided by the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Observes only.
    Read,
    /// May change the world.
    Write,
}
