//! PATCH bodies: JSON Patch (RFC 6902), JSON Merge Patch (RFC 7386), and a strategic merge
//! patch good enough for what kubectl sends (`rollout restart|pause|resume`, `set image`):
//! a merge patch whose lists of objects merge by `name` (or `containerPort`), honouring
//! `$patch: delete` on list elements and ignoring the other `$` directives.

use serde_json::Value;

/// Applies a patch of `content_type` to `target`, returning the patched copy.
pub(crate) fn apply(content_type: &str, target: &Value, body: &[u8]) -> Result<Value, String> {
    let patch: Value =
        serde_json::from_slice(body).map_err(|e| format!("the patch is not JSON: {e}"))?;
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let mut doc = target.clone();
    match media_type.as_str() {
        "application/json-patch+json" => json_patch(&mut doc, &patch)?,
        "application/merge-patch+json" => merge_patch(&mut doc, &patch, false),
        "application/strategic-merge-patch+json" => merge_patch(&mut doc, &patch, true),
        other => return Err(format!("the patch content type {other:?} is not supported")),
    }
    Ok(doc)
}

/// RFC 7386: objects merge recursively, `null` deletes, anything else replaces. With
/// `strategic`, `$` directive keys are skipped and lists of objects merge by key.
fn merge_patch(target: &mut Value, patch: &Value, strategic: bool) {
    if strategic
        && let (Value::Array(items), Value::Array(patches)) = (&mut *target, patch)
        && let Some(key) = merge_key(patches)
    {
        merge_list(items, patches, key);
        return;
    }
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if strategic && key.starts_with('$') {
                continue;
            }
            if value.is_null() {
                map.remove(key);
            } else {
                let slot = map.entry(key.clone()).or_insert(Value::Null);
                merge_patch(slot, value, strategic);
            }
        }
    }
}

/// The key a strategic list merge matches elements on, if every element has one.
fn merge_key(patches: &[Value]) -> Option<&'static str> {
    ["name", "containerPort"]
        .into_iter()
        .find(|key| !patches.is_empty() && patches.iter().all(|p| p.get(key).is_some()))
}

fn merge_list(items: &mut Vec<Value>, patches: &[Value], key: &str) {
    for patch in patches {
        let position = items
            .iter()
            .position(|item| item.get(key) == patch.get(key));
        match (position, patch["$patch"].as_str()) {
            (Some(i), Some("delete")) => {
                items.remove(i);
            }
            (None, Some("delete")) => {}
            (Some(i), _) => merge_patch(&mut items[i], patch, true),
            (None, _) => {
                let mut item = Value::Null;
                merge_patch(&mut item, patch, true);
                items.push(item);
            }
        }
    }
}

/// RFC 6902 operations `add`, `remove`, `replace`, `test`, `move` and `copy`.
fn json_patch(doc: &mut Value, patch: &Value) -> Result<(), String> {
    let ops = patch
        .as_array()
        .ok_or("a JSON patch must be an array of operations")?;
    for op in ops {
        let name = op["op"].as_str().ok_or("an operation has no \"op\"")?;
        let path = op["path"].as_str().ok_or("an operation has no \"path\"")?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or("an operation has no \"value\"")
        };
        match name {
            "add" => add(doc, path, value()?)?,
            "remove" => {
                remove(doc, path)?;
            }
            "replace" => {
                remove(doc, path)?;
                add(doc, path, value()?)?;
            }
            "test" => {
                if pointer(doc, path) != Some(&value()?) {
                    return Err(format!("test failed at {path}"));
                }
            }
            "move" | "copy" => {
                let from = op["from"].as_str().ok_or("an operation has no \"from\"")?;
                let moved = if name == "move" {
                    remove(doc, from)?
                } else {
                    pointer(doc, from)
                        .cloned()
                        .ok_or_else(|| format!("no value at {from}"))?
                };
                add(doc, path, moved)?;
            }
            other => return Err(format!("unknown JSON patch operation {other:?}")),
        }
    }
    Ok(())
}

fn pointer<'a>(doc: &'a Value, path: &str) -> Option<&'a Value> {
    doc.pointer(path)
}

/// Splits a JSON pointer into its parent pointer and unescaped last token.
fn split_pointer(path: &str) -> Result<(&str, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid JSON pointer {path:?}"))?;
    Ok((parent, last.replace("~1", "/").replace("~0", "~")))
}

fn add(doc: &mut Value, path: &str, value: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = value;
        return Ok(());
    }
    let (parent, key) = split_pointer(path)?;
    match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => {
            map.insert(key, value);
            Ok(())
        }
        Some(Value::Array(items)) => {
            let index = if key == "-" {
                items.len()
            } else {
                key.parse::<usize>()
                    .ok()
                    .filter(|i| *i <= items.len())
                    .ok_or_else(|| format!("invalid array index in {path}"))?
            };
            items.insert(index, value);
            Ok(())
        }
        _ => Err(format!(
            "no object or array at {parent:?} to add {path:?} to"
        )),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, key) = split_pointer(path)?;
    let removed = match doc.pointer_mut(parent) {
        Some(Value::Object(map)) => map.remove(&key),
        Some(Value::Array(items)) => key
            .parse::<usize>()
            .ok()
            .filter(|i| *i < items.len())
            .map(|i| items.remove(i)),
        _ => None,
    };
    removed.ok_or_else(|| format!("no value at {path:?}"))
}
