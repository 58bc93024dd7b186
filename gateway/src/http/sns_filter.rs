//! SNS subscription filter policies.
//!
//! A policy is a JSON object whose keys must all match (`$or` takes a list of
//! alternative policies). Each key holds a list of conditions, any of which
//! may match: exact strings or numbers, `null`, `{"prefix": ..}`,
//! `{"suffix": ..}`, `{"equals-ignore-case": ..}`, `{"anything-but": ..}`
//! (a value, a list, or `{"prefix": ..}`), `{"numeric": [op, n, ...]}`, and
//! `{"exists": bool}`. With `FilterPolicyScope` `MessageAttributes` the keys
//! name message attributes (String, Number, and `String.Array` holding a JSON
//! array); with `MessageBody` they are paths into a JSON body, nested policy
//! objects following nested body objects.

use serde_json::{Map, Value};

/// Where a policy looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Message attributes (the default).
    Attributes,
    /// The JSON message body.
    Body,
}

/// A parsed, validated filter policy.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterPolicy {
    policy: Map<String, Value>,
    /// Where it looks.
    pub scope: Scope,
}

/// An attribute value as a policy sees it.
#[derive(Debug, Clone)]
pub enum AttrValue {
    /// String (and anything else textual).
    Text(String),
    /// Number.
    Number(f64),
    /// `String.Array`: a JSON array of values.
    Array(Vec<Value>),
}

impl FilterPolicy {
    /// Parses a policy; the error says what is wrong.
    pub fn parse(text: &str, scope: Scope) -> Result<FilterPolicy, String> {
        let v: Value = serde_json::from_str(text)
            .map_err(|e| format!("FilterPolicy: failed to parse JSON: {e}"))?;
        let Value::Object(policy) = v else {
            return Err("FilterPolicy: the policy must be a JSON object".into());
        };
        check_policy(&policy, scope)?;
        Ok(FilterPolicy { policy, scope })
    }

    /// Whether a message with these attributes passes (scope Attributes).
    pub fn matches_attributes(&self, attrs: &[(String, AttrValue)]) -> bool {
        policy_matches_attrs(&self.policy, attrs)
    }

    /// Whether a message with this body passes (scope Body).
    pub fn matches_body(&self, body: &[u8]) -> bool {
        match serde_json::from_slice::<Value>(body) {
            Ok(Value::Object(doc)) => policy_matches_body(&self.policy, &doc),
            _ => false,
        }
    }
}

fn check_policy(policy: &Map<String, Value>, scope: Scope) -> Result<(), String> {
    if policy.is_empty() {
        return Err("FilterPolicy: the policy cannot be empty".into());
    }
    for (k, v) in policy {
        if k == "$or" {
            let Value::Array(alts) = v else {
                return Err("FilterPolicy: $or must be an array of policies".into());
            };
            for alt in alts {
                let Value::Object(p) = alt else {
                    return Err("FilterPolicy: $or must be an array of policies".into());
                };
                check_policy(p, scope)?;
            }
            continue;
        }
        match v {
            Value::Array(conds) => {
                if conds.is_empty() {
                    return Err(format!("FilterPolicy: key {k} has an empty list of values"));
                }
                for c in conds {
                    check_condition(k, c)?;
                }
            }
            Value::Object(nested) if scope == Scope::Body => check_policy(nested, scope)?,
            _ => {
                return Err(format!(
                    "FilterPolicy: key {k} must be followed by an array of values"
                ));
            }
        }
    }
    Ok(())
}

fn check_condition(key: &str, c: &Value) -> Result<(), String> {
    match c {
        Value::String(_) | Value::Number(_) | Value::Null | Value::Bool(_) => Ok(()),
        Value::Object(op) => {
            let Some((name, arg)) = op.iter().next() else {
                return Err(format!("FilterPolicy: empty operator for key {key}"));
            };
            match name.as_str() {
                "prefix" | "suffix" | "equals-ignore-case" if arg.is_string() => Ok(()),
                "exists" if arg.is_boolean() => Ok(()),
                "anything-but" => Ok(()),
                "numeric" => {
                    let Value::Array(parts) = arg else {
                        return Err(format!(
                            "FilterPolicy: numeric for key {key} must be an array"
                        ));
                    };
                    if parts.len() % 2 != 0 || parts.is_empty() {
                        return Err(format!(
                            "FilterPolicy: numeric for key {key} needs operator/value pairs"
                        ));
                    }
                    for pair in parts.chunks(2) {
                        let ok = matches!(pair[0].as_str(), Some("=" | "<" | "<=" | ">" | ">="))
                            && pair[1].is_number();
                        if !ok {
                            return Err(format!(
                                "FilterPolicy: bad numeric condition for key {key}"
                            ));
                        }
                    }
                    Ok(())
                }
                other => Err(format!("FilterPolicy: unrecognized match type {other}")),
            }
        }
        Value::Array(_) => Err(format!(
            "FilterPolicy: nested arrays are not allowed for key {key}"
        )),
    }
}

fn policy_matches_attrs(policy: &Map<String, Value>, attrs: &[(String, AttrValue)]) -> bool {
    policy.iter().all(|(k, conds)| {
        if k == "$or" {
            return conds.as_array().is_some_and(|alts| {
                alts.iter().any(|a| {
                    a.as_object()
                        .is_some_and(|p| policy_matches_attrs(p, attrs))
                })
            });
        }
        let Value::Array(conds) = conds else {
            return false;
        };
        let value = attrs.iter().find(|(name, _)| name == k).map(|(_, v)| v);
        conds.iter().any(|c| match value {
            None => matches!(c, Value::Object(o) if o.get("exists") == Some(&Value::Bool(false))),
            Some(AttrValue::Text(s)) => condition(c, Some(&Value::String(s.clone()))),
            Some(AttrValue::Number(n)) => condition(
                c,
                serde_json::Number::from_f64(*n).map(Value::Number).as_ref(),
            ),
            Some(AttrValue::Array(items)) => items.iter().any(|i| condition(c, Some(i))),
        })
    })
}

fn policy_matches_body(policy: &Map<String, Value>, doc: &Map<String, Value>) -> bool {
    policy.iter().all(|(k, spec)| {
        if k == "$or" {
            return spec.as_array().is_some_and(|alts| {
                alts.iter()
                    .any(|a| a.as_object().is_some_and(|p| policy_matches_body(p, doc)))
            });
        }
        match spec {
            Value::Object(nested) => match doc.get(k) {
                Some(Value::Object(inner)) => policy_matches_body(nested, inner),
                _ => false,
            },
            Value::Array(conds) => {
                let value = doc.get(k);
                conds.iter().any(|c| match value {
                    Some(Value::Array(items)) => items.iter().any(|i| condition(c, Some(i))),
                    other => condition(c, other),
                })
            }
            _ => false,
        }
    })
}

/// Whether one condition holds for a value (`None`: the key is absent).
fn condition(c: &Value, v: Option<&Value>) -> bool {
    match c {
        Value::Object(op) => {
            let Some((name, arg)) = op.iter().next() else {
                return false;
            };
            match (name.as_str(), v) {
                ("exists", v) => arg.as_bool() == Some(v.is_some()),
                (_, None) => false,
                ("prefix", Some(Value::String(s))) => {
                    arg.as_str().is_some_and(|p| s.starts_with(p))
                }
                ("suffix", Some(Value::String(s))) => arg.as_str().is_some_and(|p| s.ends_with(p)),
                ("equals-ignore-case", Some(Value::String(s))) => {
                    arg.as_str().is_some_and(|p| s.eq_ignore_ascii_case(p))
                }
                ("anything-but", Some(v)) => match arg {
                    Value::Array(list) => !list.iter().any(|x| equal(x, v)),
                    Value::Object(inner) => match (inner.get("prefix"), v) {
                        (Some(Value::String(p)), Value::String(s)) => !s.starts_with(p.as_str()),
                        _ => true,
                    },
                    x => !equal(x, v),
                },
                ("numeric", Some(v)) => {
                    let Some(n) = as_number(v) else { return false };
                    arg.as_array().is_some_and(|parts| {
                        parts.chunks(2).all(|pair| {
                            let Some(bound) = pair[1].as_f64() else {
                                return false;
                            };
                            match pair[0].as_str() {
                                Some("=") => n == bound,
                                Some("<") => n < bound,
                                Some("<=") => n <= bound,
                                Some(">") => n > bound,
                                Some(">=") => n >= bound,
                                _ => false,
                            }
                        })
                    })
                }
                _ => false,
            }
        }
        literal => v.is_some_and(|v| equal(literal, v)),
    }
}

fn as_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Policy literal equality: numbers compare numerically (also against numeric text).
fn equal(policy: &Value, v: &Value) -> bool {
    match (policy, v) {
        (Value::Number(a), _) => as_number(v).is_some_and(|b| a.as_f64() == Some(b)),
        (Value::String(a), Value::String(b)) => a == b,
        (a, b) => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, AttrValue)]) -> Vec<(String, AttrValue)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn attribute_policy_with_exact_prefix_and_numeric() {
        let p = FilterPolicy::parse(
            r#"{"plan": ["pro", {"prefix": "ent"}], "seats": [{"numeric": [">=", 10, "<", 100]}]}"#,
            Scope::Attributes,
        )
        .unwrap();
        assert!(p.matches_attributes(&attrs(&[
            ("plan", AttrValue::Text("enterprise".into())),
            ("seats", AttrValue::Number(20.0))
        ])));
        assert!(!p.matches_attributes(&attrs(&[
            ("plan", AttrValue::Text("free".into())),
            ("seats", AttrValue::Number(20.0))
        ])));
        assert!(!p.matches_attributes(&attrs(&[("plan", AttrValue::Text("pro".into()))])));
    }

    #[test]
    fn anything_but_exists_and_or() {
        let p = FilterPolicy::parse(
            r#"{"$or": [{"plan": [{"anything-but": ["free"]}]}, {"vip": [{"exists": true}]}]}"#,
            Scope::Attributes,
        )
        .unwrap();
        assert!(p.matches_attributes(&attrs(&[("plan", AttrValue::Text("pro".into()))])));
        assert!(!p.matches_attributes(&attrs(&[("plan", AttrValue::Text("free".into()))])));
        assert!(p.matches_attributes(&attrs(&[
            ("plan", AttrValue::Text("free".into())),
            ("vip", AttrValue::Text("y".into()))
        ])));
    }

    #[test]
    fn body_policy_follows_nested_objects_and_arrays() {
        let p = FilterPolicy::parse(
            r#"{"user": {"plan": ["pro"]}, "tags": ["beta"]}"#,
            Scope::Body,
        )
        .unwrap();
        assert!(p.matches_body(br#"{"user": {"plan": "pro"}, "tags": ["alpha", "beta"]}"#));
        assert!(!p.matches_body(br#"{"user": {"plan": "free"}, "tags": ["beta"]}"#));
        assert!(!p.matches_body(b"not json"));
    }

    #[test]
    fn invalid_policies_are_refused() {
        assert!(FilterPolicy::parse("[]", Scope::Attributes).is_err());
        assert!(FilterPolicy::parse(r#"{"a": "b"}"#, Scope::Attributes).is_err());
        assert!(FilterPolicy::parse(r#"{"a": [{"regex": "x"}]}"#, Scope::Attributes).is_err());
    }
}
