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
            for credential in credentials(value) {
                if credential.len() < MIN_SECRET_BYTES {
                    return Err(format!(
                        "[secrets] {name}: the credential is {} bytes; a secret must be at \
                         least {MIN_SECRET_BYTES} bytes (after an auth scheme such as \
                         \"Bearer \") so that it can be recognised and kept out of what \
                         runbooks see",
                        credential.len()
                    ));
                }
                spellings(&credential, &mut patterns);
            }
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
    /// that form holds one). `None` when it holds one and cannot be rebuilt without it: the
    /// caller must then not pass the value on.
    pub fn value<T: serde::Serialize + serde::de::DeserializeOwned>(&self, value: T) -> Option<T> {
        if self.matcher.is_none() {
            return Some(value);
        }
        let Ok(mut json) = serde_json::to_value(&value) else {
            return None;
        };
        if !self.finds(json.to_string().as_bytes()) {
            return Some(value);
        }
        self.json(&mut json);
        serde_json::from_value(json).ok()
    }

    /// A JSON value with every secret in its strings replaced, in place.
    pub fn json(&self, value: &mut serde_json::Value) {
        use serde_json::Value;
        match value {
            Value::String(text) => *text = self.text(std::mem::take(text)),
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

/// The credentials inside a secret value: the value itself, the part after an HTTP auth
/// scheme (`Bearer …`, `Token …`), and for `Basic` the decoded `user:password` and password.
fn credentials(value: &str) -> Vec<String> {
    let mut found = vec![value.to_owned()];
    if let Some((scheme, rest)) = value.trim().split_once(' ') {
        let rest = rest.trim();
        if scheme.len() <= 16
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            found.push(rest.to_owned());
            if scheme.eq_ignore_ascii_case("basic")
                && let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(rest)
                && let Ok(pair) = String::from_utf8(decoded)
            {
                if let Some((_, password)) = pair.split_once(':') {
                    found.push(password.to_owned());
                }
                found.push(pair);
            }
        }
    }
    found
}

/// The spellings of `secret` a server is likely to echo: as is; percent-encoded (form and
/// RFC 3986 style, upper and lower hex); JSON-escaped (also with `\/`); and base64 and
/// base64url at each of the three alignments it can take inside longer encoded text.
fn spellings(secret: &str, patterns: &mut Vec<String>) {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    patterns.push(secret.to_owned());
    let form: String = url::form_urlencoded::byte_serialize(secret.as_bytes()).collect();
    let rfc3986 = form.replace('+', "%20");
    patterns.push(rfc3986.to_lowercase_hex());
    patterns.push(rfc3986);
    patterns.push(form);
    if let Ok(json) = serde_json::to_string(secret) {
        let escaped = json[1..json.len() - 1].to_owned();
        patterns.push(escaped.replace('/', "\\/"));
        patterns.push(escaped);
    }
    let bytes = secret.as_bytes();
    for engine in [&STANDARD, &URL_SAFE] {
        for offset in 0..3 {
            let mut shifted = vec![0u8; offset];
            shifted.extend_from_slice(bytes);
            let encoded = engine.encode(&shifted);
            // Characters that depend on the secret's bytes alone.
            let start = (offset * 8).div_ceil(6);
            let end = (shifted.len() * 8) / 6;
            if let Some(core) = encoded.get(start..end)
                && core.len() >= MIN_SECRET_BYTES
            {
                patterns.push(core.to_owned());
            }
        }
    }
}

/// `%2F` spelled `%2f`.
trait LowercaseHex {
    fn to_lowercase_hex(&self) -> String;
}

impl LowercaseHex for String {
    fn to_lowercase_hex(&self) -> String {
        let mut out = String::with_capacity(self.len());
        let mut chars = self.chars();
        while let Some(c) = chars.next() {
            out.push(c);
            if c == '%' {
                out.extend(chars.by_ref().take(2).map(|h| h.to_ascii_lowercase()));
            }
        }
        out
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
        let clean = redactor.value(value).unwrap();
        assert_eq!(clean[0].1, format!("the token is {REDACTED}"));
    }

    #[test]
    fn the_credential_inside_a_scheme_and_its_encodings_are_replaced() {
        let redactor = Redactor::new([("token", "Bearer tok/en+12345")]).unwrap();
        for echoed in [
            "invalid token tok/en+12345",
            "q=tok%2Fen%2B12345",
            "q=tok%2fen%2b12345",
            "{\"t\":\"tok\\/en+12345\"}",
            // The token inside a longer base64 text, at each alignment.
            &base64::engine::general_purpose::STANDARD.encode("xtok/en+12345y"),
            &base64::engine::general_purpose::STANDARD.encode("xxtok/en+12345y"),
            &base64::engine::general_purpose::URL_SAFE.encode("tok/en+12345yy"),
        ] {
            let clean = redactor.text(echoed.to_owned());
            assert!(clean.contains(REDACTED), "not caught: {echoed} → {clean}");
        }
        let basic = base64::engine::general_purpose::STANDARD.encode("quell:hunter2hunter2");
        let redactor = Redactor::new([("basic", format!("Basic {basic}").as_str())]).unwrap();
        assert_eq!(
            redactor.text("password hunter2hunter2".to_owned()),
            format!("password {REDACTED}")
        );
        let error = Redactor::new([("short", "Bearer x")]).unwrap_err();
        assert!(error.contains("the credential is 1 bytes"), "{error}");
    }

    #[test]
    fn a_secret_too_short_to_recognise_is_refused() {
        let error = Redactor::new([("pin", "1234")]).unwrap_err();
        assert!(error.contains("[secrets] pin"), "{error}");
        assert!(Redactor::new([]).unwrap().text("abc".to_owned()) == "abc");
    }
}
