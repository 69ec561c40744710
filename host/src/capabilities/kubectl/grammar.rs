//! Kubernetes' grammars for the names and selectors a kubectl request carries, as
//! apimachinery defines them (`IsDNS1123Label`, `IsDNS1123Subdomain`, `IsQualifiedName`,
//! `IsValidLabelValue`, and the label-selector syntax of `labels.Parse`). Every error names
//! the rule that failed.

const LABEL_RULE: &str =
    "at most 63 characters: a-z, 0-9 and '-', starting and ending with a letter or digit";
const SUBDOMAIN_RULE: &str = "at most 253 characters: DNS-1123 labels (a-z, 0-9 and '-', \
     starting and ending with a letter or digit) joined by '.'";
const KEY_RULE: &str = "an optional DNS-1123 subdomain prefix and '/', then a name of at most \
     63 characters: letters, digits, '-', '_' and '.', starting and ending with a letter or digit";
const VALUE_RULE: &str = "empty, or at most 63 characters: letters, digits, '-', '_' and '.', \
     starting and ending with a letter or digit";

/// The longest label selector accepted.
const MAX_SELECTOR: usize = 1024;

fn is_label(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-')
}

fn is_subdomain(value: &str) -> bool {
    value.len() <= 253 && value.split('.').all(is_label)
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63 characters; empty when `empty_ok`.
fn is_label_name(value: &str, empty_ok: bool) -> bool {
    let edge = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if value.is_empty() {
        return empty_ok;
    }
    value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && edge(value.bytes().next())
        && edge(value.bytes().last())
}

/// A DNS-1123 label: namespaces, containers, and the names of namespaces.
pub fn dns_label(what: &str, value: &str) -> Result<(), String> {
    is_label(value)
        .then_some(())
        .ok_or_else(|| format!("invalid {what} {value:?}: not a DNS-1123 label ({LABEL_RULE})"))
}

/// A DNS-1123 subdomain: the names of most objects.
pub fn dns_subdomain(what: &str, value: &str) -> Result<(), String> {
    is_subdomain(value).then_some(()).ok_or_else(|| {
        format!("invalid {what} {value:?}: not a DNS-1123 subdomain ({SUBDOMAIN_RULE})")
    })
}

/// Why `key` is not a label key.
fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix
        && !is_subdomain(prefix)
    {
        return Err(format!(
            "key {key:?} has the prefix {prefix:?}, which is not a DNS-1123 subdomain \
             ({SUBDOMAIN_RULE})"
        ));
    }
    is_label_name(name, false)
        .then_some(())
        .ok_or_else(|| format!("key {key:?} is not a valid label key ({KEY_RULE})"))
}

/// Why `value` is not a label value.
fn label_value(value: &str) -> Result<(), String> {
    is_label_name(value, true)
        .then_some(())
        .ok_or_else(|| format!("value {value:?} is not a valid label value ({VALUE_RULE})"))
}

/// Splits on the commas outside parentheses; `None` when the parentheses do not pair up.
fn requirements(selector: &str) -> Option<Vec<&str>> {
    let mut parts = Vec::new();
    let (mut open, mut start) = (false, 0);
    for (i, c) in selector.char_indices() {
        match c {
            '(' if !open => open = true,
            ')' if open => open = false,
            '(' | ')' => return None,
            ',' if !open => {
                parts.push(&selector[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&selector[start..]);
    (!open).then_some(parts)
}

/// One requirement, checked and rendered the way kubectl will read it.
fn requirement(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("a requirement is empty (a stray ',')".to_owned());
    }
    if let Some(key) = text.strip_prefix('!') {
        let key = key.trim();
        label_key(key)?;
        return Ok(format!("!{key}"));
    }
    if let Some(open) = text.find('(') {
        let (key, operator) = text[..open]
            .trim_end()
            .rsplit_once(char::is_whitespace)
            .map(|(key, operator)| (key.trim(), operator))
            .ok_or_else(|| format!("{text:?} is not `key in (values)` or `key notin (values)`"))?;
        if !matches!(operator, "in" | "notin") {
            return Err(format!(
                "{text:?} is not `key in (values)` or `key notin (values)`: {operator:?} is no operator"
            ));
        }
        let values = text[open + 1..]
            .strip_suffix(')')
            .ok_or_else(|| format!("{text:?} has text after its closing ')'"))?;
        label_key(key)?;
        if values.trim().is_empty() {
            return Err(format!("{text:?} has no values between its parentheses"));
        }
        let values: Vec<&str> = values.split(',').map(str::trim).collect();
        for value in &values {
            label_value(value)?;
        }
        return Ok(format!("{key} {operator} ({})", values.join(",")));
    }
    let Some(at) = text.find(['=', '!']) else {
        label_key(text)?;
        return Ok(text.to_owned());
    };
    let operator = ["!=", "==", "="]
        .into_iter()
        .find(|operator| text[at..].starts_with(operator))
        .ok_or_else(|| format!("{text:?}: '!' is only an operator as `!key` or `!=`"))?;
    let key = text[..at].trim();
    let value = text[at + operator.len()..].trim();
    label_key(key)?;
    label_value(value)?;
    Ok(format!("{key}{operator}{value}"))
}

/// A field selector (`involvedObject.name=api-1,involvedObject.kind!=Node`): comma-separated
/// `field=value`, `field==value` or `field!=value`, a field being a dotted path of letters,
/// digits, `_` and `-`, a value of letters, digits and `-_.:/` (up to 253 bytes each).
/// Returned rendered canonically.
pub fn field_selector(selector: &str) -> Result<String, String> {
    let fail = |why: String| format!("invalid field selector {selector:?}: {why}");
    if selector.len() > MAX_SELECTOR {
        return Err(fail(format!(
            "{} bytes, over the {MAX_SELECTOR}-byte limit",
            selector.len()
        )));
    }
    let mut rendered = Vec::new();
    for part in selector.split(',') {
        let (field, op, value) = if let Some((f, v)) = part.split_once("!=") {
            (f, "!=", v)
        } else if let Some((f, v)) = part.split_once("==") {
            (f, "=", v)
        } else if let Some((f, v)) = part.split_once('=') {
            (f, "=", v)
        } else {
            return Err(fail(format!("{part:?} is not field=value or field!=value")));
        };
        let field_ok = !field.is_empty()
            && field.len() <= 253
            && field.split('.').all(|segment| {
                !segment.is_empty()
                    && !segment.starts_with('-')
                    && segment
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            });
        if !field_ok {
            return Err(fail(format!(
                "{field:?} is not a field path (letters, digits, _ and - in dotted segments)"
            )));
        }
        let value_ok = value.len() <= 253
            && !value.starts_with('-')
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.:/".contains(c));
        if !value_ok {
            return Err(fail(format!(
                "{value:?} is not a field value (letters, digits and -_.:/, not starting with -)"
            )));
        }
        rendered.push(format!("{field}{op}{value}"));
    }
    Ok(rendered.join(","))
}

/// Checks a label selector — comma-separated `key`, `!key`, `key=value`, `key==value`,
/// `key!=value`, `key in (a,b)` and `key notin (a,b)` — and renders it with the spaces
/// around keys, operators and values dropped, which is how kubectl reads it.
pub fn label_selector(selector: &str) -> Result<String, String> {
    let fail = |why: String| format!("invalid label selector {selector:?}: {why}");
    if selector.len() > MAX_SELECTOR {
        return Err(fail(format!(
            "{} bytes, over the {MAX_SELECTOR}-byte limit",
            selector.len()
        )));
    }
    if selector.trim().is_empty() {
        return Err(fail("it has no requirement".to_owned()));
    }
    let parts =
        requirements(selector).ok_or_else(|| fail("its parentheses do not pair up".to_owned()))?;
    let rendered: Vec<String> = parts
        .into_iter()
        .map(requirement)
        .collect::<Result<_, _>>()
        .map_err(fail)?;
    Ok(rendered.join(","))
}
