//! AWS Signature Version 4 verification for the SQS/SNS API.
//!
//! By default any signature (or none) is accepted, as local SQS emulators do.
//! With `[[aws.access_keys]]` configured, every request must carry an
//! `Authorization: AWS4-HMAC-SHA256 ...` header whose signature matches one of
//! those keys; the canonical request is rebuilt from what arrived.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::aws::ApiError;
use crate::config::AccessKeyConfig;

type HmacSha256 = Hmac<Sha256>;

/// What verification needs from a request.
pub struct SignedRequest<'a> {
    /// HTTP method.
    pub method: &'a str,
    /// The path as sent (still percent-encoded).
    pub path: &'a str,
    /// The query string as sent (without `?`).
    pub query: &'a str,
    /// Header lookup by lower-case name.
    pub headers: &'a dyn Fn(&str) -> Option<String>,
    /// The body.
    pub body: &'a [u8],
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn uri_encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        let c = b as char;
        if c.is_ascii_alphanumeric()
            || matches!(c, '-' | '_' | '.' | '~')
            || (keep_slash && c == '/')
        {
            out.push(c);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn denied(code: &'static str, message: &str) -> ApiError {
    ApiError::sender(code, message.to_owned()).status(403)
}

/// Verifies a request against the configured keys.
pub fn verify(req: &SignedRequest<'_>, keys: &[AccessKeyConfig]) -> Result<(), ApiError> {
    let auth = (req.headers)("authorization").ok_or_else(|| {
        denied(
            "MissingAuthenticationToken",
            "Request is missing Authentication Token",
        )
    })?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| denied("IncompleteSignature", "Unsupported authorization scheme"))?;
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(denied(
            "IncompleteSignature",
            "Authorization header is incomplete",
        ));
    };
    let mut cred = credential.splitn(5, '/');
    let (Some(key_id), Some(date), Some(region), Some(service), Some(_term)) = (
        cred.next(),
        cred.next(),
        cred.next(),
        cred.next(),
        cred.next(),
    ) else {
        return Err(denied("IncompleteSignature", "Credential is malformed"));
    };
    let Some(key) = keys.iter().find(|k| k.id == key_id) else {
        return Err(denied(
            "InvalidClientTokenId",
            "The security token included in the request is invalid.",
        ));
    };
    let amz_date = (req.headers)("x-amz-date").unwrap_or_default();

    let mut query: Vec<(String, String)> = super::aws::form_pairs(req.query)
        .into_iter()
        .map(|(k, v)| (uri_encode(&k, false), uri_encode(&v, false)))
        .collect();
    query.sort();
    let canonical_query: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical_headers = String::new();
    for name in signed_headers.split(';') {
        let value = (req.headers)(name).unwrap_or_default();
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        canonical_headers.push_str(&format!("{name}:{value}\n"));
    }
    let payload_hash =
        (req.headers)("x-amz-content-sha256").unwrap_or_else(|| hex(&Sha256::digest(req.body)));
    let path = if req.path.is_empty() { "/" } else { req.path };
    let canonical = format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method,
        uri_encode(path, true),
        canonical_query.join("&"),
        canonical_headers,
        signed_headers,
        payload_hash
    );
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let k_date = hmac(format!("AWS4{}", key.secret).as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    let expected = hex(&hmac(&k_signing, to_sign.as_bytes()));
    let same = expected.len() == signature.len()
        && expected
            .bytes()
            .zip(signature.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(denied(
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's published SigV4 example ("get-vanilla" from the test suite).
    #[test]
    fn aws_reference_example_verifies() {
        let keys = vec![AccessKeyConfig {
            id: "AKIDEXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
        }];
        let headers = |name: &str| -> Option<String> {
            match name {
                "authorization" => Some("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31".into()),
                "host" => Some("example.amazonaws.com".into()),
                "x-amz-date" => Some("20150830T123600Z".into()),
                _ => None,
            }
        };
        let req = SignedRequest {
            method: "GET",
            path: "/",
            query: "",
            headers: &headers,
            body: b"",
        };
        verify(&req, &keys).unwrap();
        let wrong = vec![AccessKeyConfig {
            id: "AKIDEXAMPLE".into(),
            secret: "not-the-secret".into(),
        }];
        assert_eq!(
            verify(&req, &wrong).unwrap_err().code,
            "SignatureDoesNotMatch"
        );
    }
}
