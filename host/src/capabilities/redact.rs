//! Keeping the host's secrets out of everything a runbook gets and everything recorded.
//!
//! A policy may attach a `[secrets]` value to an HTTP request as a header; the runbook never
//! sees it. A server that echoes request headers, or an error page that prints them, would
//! hand it back — so every output bound for a runbook (command stdout and stderr, HTTP
//! headers and bodies, error texts) passes through [`Redactor`] first, and so do the run's
//! own output, its timeline notes and its export values. Records are made from what the
//! runbook was handed, so they never hold a secret either.

use aho_corasick::AhoCorasick;
use base64::Engine as _;

/// What a secret's value is replaced with.
pub const REDACTED: &str = "[redacted secret]";

/// Secrets shorter than this are refused: they cannot be told apart from ordinary text.
pub const MIN_SECRET_BYTES: usize = 8;

/// Finds and replaces every configured secret value, in the spellings a server is likely
/// to echo: as is, percent-encoded, and base64.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    matcher: Option<AhoCorasick>,
}

impl Redactor {
    /// A redactor for these `(name, value)` secrets; refuses a value too short to redact.
    pub fn new<'a>(secrets: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, String> {
        let mut patterns: Vec<String> = Vec::new();
        for (name, value) in secrets {
            if value.len() < MIN_SECRET_BYTES {
                return Err(format!(
                    "[secrets] {name}: the value is {} bytes; a secret must be at least \
                     {MIN_SECRET_BYTES} bytes so that it can be recognised and kept out of \
                     what runbooks see",
                    value.len()
                ));
            }
            patterns.push(value.to_owned());
            let encoded = url::form_urlencoded::byte_serialize(value.as_bytes()).collect();
            patterns.push(encoded);
            patterns.push(base64::engine::general_purpose::STANDARD.encode(value));
            patterns.push(base64::engine::general_purpose::STANDARD_NO_PAD.encode(value));
        }
        patterns.sort();
        patterns.dedup();
        if patterns.is_empty() {
            return Ok(Self::default());
        }
        let matcher = AhoCorasick::builder()
            .match_kind(aho_corasick::MatchKind::LeftmostLongest)
            .build(&patterns)
            .map_err(|e| format!("[secrets]: cannot build the redaction matcher: {e}"))?;
        Ok(Self {
            matcher: Some(matcher),
        })
    }

    /// Whether `text` holds a secret.
    pub fn finds(&self, text: &[u8]) -> bool {
        self.matcher.as_ref().is_some_and(|m| m.is_match(text))
    }

    /// `text` with every secret replaced.
    pub fn text(&self, text: String) -> String {
        match &self.matcher {
            Some(m) if m.is_match(&text) => {
                let with = vec![REDACTED; m.patterns_len()];
                m.replace_all(&text, &with)
            }
            _ => text,
        }
    }

    /// `bytes` with every secret replaced.
    pub fn bytes(&self, bytes: Vec<u8>) -> Vec<u8> {
        match &self.matcher {
            Some(m) if m.is_match(&bytes) => {
                let with = vec![REDACTED.as_bytes(); m.patterns_len()];
                m.replace_all_bytes(&bytes, &with)
            }
            _ => bytes,
        }
    }

    /// A value with every secret in its strings replaced (through its JSON form, only when
    /// that form holds one).
    pub fn value<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: T) -> T {
        if self.matcher.is_none() {
            return value;
        }
        let Ok(json) = serde_json::to_value(&value) else {
            return value;
        };
        if !self.finds(json.to_string().as_bytes()) {
            return value;
        }
        let mut json = json;
        self.json(&mut json);
        serde_json::from_value(json).unwrap_or(value)
    }

    fn json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => *text = self.text(std::mem::take(text)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_a_secret_is_replaced() {
        let redactor = Redactor::new([("token", "Bearer s3cr3t/+")]).unwrap();
        let echoed =
            "authorization: Bearer s3cr3t/+\nq=Bearer+s3cr3t%2F%2B\nb64=QmVhcmVyIHMzY3IzdC8r";
        let clean = redactor.text(echoed.to_owned());
        assert!(!clean.contains("s3cr3t"), "{clean}");
        assert!(!clean.contains("QmVhcmVyIHMzY3IzdC8r"), "{clean}");
        assert_eq!(clean.matches(REDACTED).count(), 3, "{clean}");
        assert_eq!(
            redactor.bytes(b"x Bearer s3cr3t/+ y".to_vec()),
            format!("x {REDACTED} y").into_bytes()
        );
        assert_eq!(redactor.text("nothing here".to_owned()), "nothing here");
    }

    #[test]
    fn values_are_redacted_through_their_strings() {
        let redactor = Redactor::new([("token", "hunter2hunter2")]).unwrap();
        let value: Vec<(String, String)> =
            vec![("k".to_owned(), "the token is hunter2hunter2".to_owned())];
        let clean = redactor.value(value);
        assert_eq!(clean[0].1, format!("the token is {REDACTED}"));
    }

    #[test]
    fn a_secret_too_short_to_recognise_is_refused() {
        let error = Redactor::new([("pin", "1234")]).unwrap_err();
        assert!(error.contains("[secrets] pin"), "{error}");
        assert!(Redactor::new([]).unwrap().text("abc".to_owned()) == "abc");
    }
}
