//! The AWS wire protocols the SDKs speak, shared by the SQS and SNS APIs.
//!
//! * **JSON** (`X-Amz-Target: AmazonSQS.<Operation>`, `application/x-amz-json-1.0`):
//!   what current SDKs use for SQS. Errors carry `__type` and, because SQS is
//!   "query compatible", an `x-amzn-query-error: <code>;Sender` header that
//!   the SDKs use to pick the modeled error.
//! * **Query** (form-encoded `Action=...`, XML responses): what SNS always
//!   uses and older SDKs and the AWS CLI v1 use for SQS.
//!
//! Both are turned into one JSON-shaped request (`Params`) so each operation
//! is written once; responses are JSON values, rendered as JSON or as XML by
//! the service's renderer.

use std::fmt::Write as _;

use serde_json::{Map, Value};

/// Which wire protocol a request used (and its response must use).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `application/x-amz-json-1.0`.
    Json,
    /// Form-encoded request, XML response.
    Query,
}

/// An error in the API's own terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// The JSON `__type` short name (e.g. `QueueDoesNotExist`).
    pub code: &'static str,
    /// The query-protocol code (e.g. `AWS.SimpleQueueService.NonExistentQueue`).
    pub query_code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Whether the client is at fault (`Sender`) or the server (`Receiver`).
    pub sender_fault: bool,
}

impl ApiError {
    /// A client error with the same code in both protocols.
    pub fn sender(code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            code,
            query_code: code,
            message: message.into(),
            sender_fault: true,
        }
    }

    /// A client error whose query code differs from its JSON code.
    pub fn sender_as(
        code: &'static str,
        query_code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status: 400,
            code,
            query_code,
            message: message.into(),
            sender_fault: true,
        }
    }

    /// With another HTTP status.
    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    /// A server error.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            code: "InternalError",
            query_code: "InternalError",
            message: message.into(),
            sender_fault: false,
        }
    }

    /// A missing required parameter.
    pub fn missing(name: &str) -> Self {
        ApiError::sender(
            "MissingParameter",
            format!("The request must contain the parameter {name}."),
        )
    }

    /// An invalid parameter value (SQS spelling).
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::sender("InvalidParameterValue", message)
    }
}

/// A request's parameters in JSON shape.
#[derive(Debug, Clone)]
pub struct Params(pub Map<String, Value>);

impl Params {
    /// A string parameter.
    pub fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Value::as_str)
    }

    /// A required string parameter.
    pub fn need_str(&self, name: &str) -> Result<&str, ApiError> {
        self.str(name).ok_or_else(|| ApiError::missing(name))
    }

    /// An integer parameter given as a number or as decimal text.
    pub fn int(&self, name: &str) -> Result<Option<i64>, ApiError> {
        match self.0.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| {
                ApiError::invalid(format!("Value {n} for parameter {name} is invalid."))
            }),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| {
                ApiError::invalid(format!(
                    "Value {s} for parameter {name} is invalid. Reason: must be an integer."
                ))
            }),
            Some(other) => Err(ApiError::invalid(format!(
                "Value {other} for parameter {name} is invalid."
            ))),
        }
    }

    /// A map of string values (`Attributes`, `Tags`).
    pub fn string_map(&self, name: &str) -> Vec<(String, String)> {
        match self.0.get(name) {
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A list of strings (`AttributeNames`, `TagKeys`).
    pub fn string_list(&self, name: &str) -> Vec<String> {
        match self.0.get(name) {
            Some(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
            Some(Value::String(s)) => vec![s.clone()],
            _ => Vec::new(),
        }
    }

    /// A list of objects (batch entries).
    pub fn objects(&self, name: &str) -> Vec<Params> {
        match self.0.get(name) {
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| Params(v.as_object().cloned().unwrap_or_default()))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A nested object.
    pub fn object(&self, name: &str) -> Option<&Map<String, Value>> {
        self.0.get(name).and_then(Value::as_object)
    }
}

/// Decodes a form-encoded body or query string into pairs.
pub fn form_pairs(text: &str) -> Vec<(String, String)> {
    text.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Turns flattened query keys (`Attribute.1.Name`, `Attributes.entry.1.key`,
/// `Tags.member.2.Key`) into nested JSON: numeric components index lists
/// (1-based), `member` and `entry` mark lists and are dropped.
pub fn unflatten(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let parts: Vec<&str> = key
            .split('.')
            .filter(|p| *p != "member" && *p != "entry")
            .collect();
        insert_path(&mut root, &parts, value);
    }
    match root {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn insert_path(node: &mut Value, parts: &[&str], value: &str) {
    let Some((head, rest)) = parts.split_first() else {
        *node = Value::String(value.to_owned());
        return;
    };
    if let Ok(index) = head.parse::<usize>() {
        if !node.is_array() {
            *node = Value::Array(Vec::new());
        }
        let Value::Array(items) = node else { return };
        let i = index.saturating_sub(1).min(1000);
        while items.len() <= i {
            items.push(Value::Null);
        }
        insert_path(&mut items[i], rest, value);
    } else {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        let Value::Object(map) = node else { return };
        let child = map.entry((*head).to_owned()).or_insert(Value::Null);
        insert_path(child, rest, value);
    }
}

/// Converts a list of `{k_name: .., v_name: ..}` objects into a map.
pub fn pairs_to_map(list: Option<Value>, k_name: &str, v_name: &str) -> Option<Value> {
    let Value::Array(items) = list? else {
        return None;
    };
    let mut map = Map::new();
    for item in items {
        let key = item.get(k_name).and_then(Value::as_str).map(str::to_owned);
        if let Some(k) = key {
            map.insert(k, item.get(v_name).cloned().unwrap_or(Value::Null));
        }
    }
    Some(Value::Object(map))
}

/// A minimal XML writer for query-protocol responses.
#[derive(Debug, Default)]
pub struct Xml(String);

impl Xml {
    /// Starts a document with `<root xmlns="...">`.
    pub fn new(root: &str, xmlns: &str) -> Self {
        let mut x = Xml(String::with_capacity(512));
        let _ = write!(x.0, "<?xml version=\"1.0\"?><{root} xmlns=\"{xmlns}\">");
        x
    }

    /// Opens an element.
    pub fn open(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        self
    }

    /// Closes an element.
    pub fn close(&mut self, name: &str) -> &mut Self {
        let _ = write!(self.0, "</{name}>");
        self
    }

    /// An element with escaped text.
    pub fn text(&mut self, name: &str, value: &str) -> &mut Self {
        let _ = write!(self.0, "<{name}>");
        escape_into(&mut self.0, value);
        let _ = write!(self.0, "</{name}>");
        self
    }

    /// An element whose value is a JSON scalar (omitted when null).
    pub fn value(&mut self, name: &str, v: Option<&Value>) -> &mut Self {
        match v {
            None | Some(Value::Null) => self,
            Some(Value::String(s)) => self.text(name, s),
            Some(other) => self.text(name, &other.to_string()),
        }
    }

    /// Closes the root and returns the document.
    pub fn finish(mut self, root: &str, request_id: &str) -> String {
        let _ = write!(
            self.0,
            "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{root}>"
        );
        self.0
    }
}

fn escape_into(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\r' => out.push_str("&#xD;"),
            c => out.push(c),
        }
    }
}

/// Escapes text for XML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// A fresh request id (UUID shape).
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_keys_unflatten_into_lists_and_maps() {
        let pairs = form_pairs(
            "Action=SendMessageBatch&SendMessageBatchRequestEntry.1.Id=a&SendMessageBatchRequestEntry.1.MessageBody=x%20y\
             &SendMessageBatchRequestEntry.2.Id=b&Attribute.1.Name=DelaySeconds&Attribute.1.Value=5\
             &Attributes.entry.1.key=DisplayName&Attributes.entry.1.value=d",
        );
        let m = unflatten(&pairs);
        assert_eq!(m["Action"], "SendMessageBatch");
        let entries = m["SendMessageBatchRequestEntry"].as_array().unwrap();
        assert_eq!(entries[0]["MessageBody"], "x y");
        assert_eq!(entries[1]["Id"], "b");
        assert_eq!(m["Attribute"][0]["Name"], "DelaySeconds");
        assert_eq!(m["Attributes"][0]["key"], "DisplayName");
        let map = pairs_to_map(m.get("Attribute").cloned(), "Name", "Value").unwrap();
        assert_eq!(map["DelaySeconds"], "5");
    }

    #[test]
    fn percent_decoding_handles_plus_and_utf8() {
        assert_eq!(percent_decode("a+b%2Fc%C3%A9"), "a b/cé");
        assert_eq!(percent_decode("100%"), "100%");
    }

    #[test]
    fn xml_escapes_text() {
        let mut x = Xml::new("R", "ns");
        x.text("V", "a<b & 'c'");
        let doc = x.finish("R", "id");
        assert!(doc.contains("<V>a&lt;b &amp; &apos;c&apos;</V>"), "{doc}");
    }

    #[test]
    fn integers_come_as_numbers_or_text() {
        let p = Params(serde_json::from_str(r#"{"A": 5, "B": "7", "C": "x"}"#).unwrap());
        assert_eq!(p.int("A").unwrap(), Some(5));
        assert_eq!(p.int("B").unwrap(), Some(7));
        assert!(p.int("C").is_err());
        assert_eq!(p.int("D").unwrap(), None);
    }
}
