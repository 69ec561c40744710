//! Label and field selectors (`labelSelector=app=api,tier!=db`, `fieldSelector=metadata.name=x`).

use serde_json::Value;

/// A parsed selector: every term must match.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    terms: Vec<Term>,
}

#[derive(Clone, Debug)]
enum Term {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

impl Selector {
    /// Parses the Kubernetes selector syntax; empty selects everything.
    pub(crate) fn parse(text: &str) -> Result<Selector, String> {
        let terms = split_terms(text)
            .into_iter()
            .filter(|t| !t.is_empty())
            .map(parse_term)
            .collect::<Result<_, _>>()?;
        Ok(Selector { terms })
    }

    /// True when every term holds for the object's labels.
    pub(crate) fn matches_labels(&self, object: &Value) -> bool {
        let labels = &object["metadata"]["labels"];
        self.matches(|key| labels[key].as_str().map(str::to_owned))
    }

    /// True when every term holds for the object's fields (`metadata.name`, `involvedObject.uid`).
    pub(crate) fn matches_fields(&self, object: &Value) -> bool {
        self.matches(|path| {
            let value = path.split('.').fold(object, |v, key| &v[key]);
            match value {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            }
        })
    }

    fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.terms.iter().all(|term| match term {
            Term::Equals(k, v) => lookup(k).as_deref() == Some(v),
            Term::NotEquals(k, v) => lookup(k).as_deref() != Some(v),
            Term::In(k, vs) => lookup(k).is_some_and(|x| vs.contains(&x)),
            Term::NotIn(k, vs) => !lookup(k).is_some_and(|x| vs.contains(&x)),
            Term::Exists(k) => lookup(k).is_some(),
            Term::NotExists(k) => lookup(k).is_none(),
        })
    }
}

/// Splits on commas outside parentheses.
fn split_terms(text: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let (mut depth, mut start) = (0usize, 0usize);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(text[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(text[start..].trim());
    terms
}

fn parse_term(term: &str) -> Result<Term, String> {
    let owned = |s: &str| s.trim().to_owned();
    if let Some(key) = term.strip_prefix('!') {
        return Ok(Term::NotExists(owned(key)));
    }
    for (op, negated) in [(" notin ", true), (" in ", false)] {
        if let Some((key, set)) = term.split_once(op) {
            let set = set
                .trim()
                .strip_prefix('(')
                .and_then(|s| s.strip_suffix(')'))
                .ok_or_else(|| format!("unable to parse requirement: {term:?}"))?;
            let values = set.split(',').map(owned).collect();
            return Ok(if negated {
                Term::NotIn(owned(key), values)
            } else {
                Term::In(owned(key), values)
            });
        }
    }
    if let Some((key, value)) = term.split_once("!=") {
        return Ok(Term::NotEquals(owned(key), owned(value)));
    }
    if let Some((key, value)) = term.split_once("==").or_else(|| term.split_once('=')) {
        return Ok(Term::Equals(owned(key), owned(value)));
    }
    if term.contains(|c: char| c.is_whitespace() || "()<>".contains(c)) {
        return Err(format!("unable to parse requirement: {term:?}"));
    }
    Ok(Term::Exists(owned(term)))
}
