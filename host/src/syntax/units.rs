//! Human-readable units used in configuration and policy files: `"30s"`, `"64MiB"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

/// So many per window: `{ count = 3, per = "1h" }` (a runbook's `max_runs`, the
/// daemon's `max_writes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// How many in one window.
    pub count: u32,
    /// The window.
    pub per: HumanDuration,
}

/// A duration written the human way (`"250ms"`, `"30s"`, `"1h"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct HumanDuration(pub Duration);

impl TryFrom<String> for HumanDuration {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let duration = humantime::parse_duration(text).map_err(|e| {
            format!("invalid duration {text:?} ({e}); write e.g. \"30s\" or \"5m\"")
        })?;
        if duration.is_zero() {
            return Err(format!(
                "invalid duration {text:?}: must be greater than zero"
            ));
        }
        Ok(Self(duration))
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

/// A size in bytes written the human way (`"64MiB"`, `"512KiB"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct ByteSize(pub u64);

impl ByteSize {
    /// The size as a `usize`, saturating on 32-bit targets.
    pub fn as_usize(self) -> usize {
        usize::try_from(self.0).unwrap_or(usize::MAX)
    }
}

impl TryFrom<String> for ByteSize {
    type Error = String;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        text.parse()
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let size = text
            .parse::<bytesize::ByteSize>()
            .map_err(|e| format!("invalid size {text:?} ({e}); write e.g. \"64MiB\""))?;
        if size.as_u64() == 0 {
            return Err(format!("invalid size {text:?}: must be greater than zero"));
        }
        Ok(Self(size.as_u64()))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations_and_sizes() {
        assert_eq!(
            "30s".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(30)
        );
        assert_eq!("64MiB".parse::<ByteSize>().unwrap().0, 64 << 20);
        assert!(
            "0s".parse::<HumanDuration>()
                .unwrap_err()
                .contains("greater than zero")
        );
        assert!(
            "lots"
                .parse::<ByteSize>()
                .unwrap_err()
                .contains("invalid size")
        );
    }
}
