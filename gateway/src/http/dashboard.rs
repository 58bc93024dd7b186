//! The built-in web dashboard: one HTML page, a stylesheet and a script,
//! embedded in the binary and served on the HTTP listener at `/` and
//! `/dashboard/...`.
//!
//! The page holds no state of its own and gets no special access: it signs in
//! with an administrator's credential and reads and acts through the admin API
//! under `/api/` like any other client. This module only hands out the files.
//!
//! `/` is shared with the SQS/SNS query protocol (AWS SDKs POST form bodies
//! there, and `GET /?Action=...` is the query protocol too), so only a GET or
//! HEAD that carries no `Action` parameter, no `X-Amz-Target` header and no
//! body is answered with the page; everything else goes on to the AWS API.

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};

use super::aws::form_pairs;

/// One embedded file.
struct Asset {
    content_type: &'static str,
    body: &'static str,
    /// A strong validator, computed at compile time from the content.
    etag: u64,
}

const fn asset(content_type: &'static str, body: &'static str) -> Asset {
    Asset {
        content_type,
        body,
        etag: fnv1a(body.as_bytes()),
    }
}

static INDEX: Asset = asset(
    "text/html; charset=utf-8",
    include_str!("dashboard/index.html"),
);
static STYLE: Asset = asset(
    "text/css; charset=utf-8",
    include_str!("dashboard/dashboard.css"),
);
static SCRIPT: Asset = asset(
    "text/javascript; charset=utf-8",
    include_str!("dashboard/dashboard.js"),
);

/// The page loads nothing but its own two files and talks only to this
/// origin; it may not be framed (the Redrive button must not be clickjacked).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'none'; frame-ancestors 'none'; \
     base-uri 'none'";

/// FNV-1a, 64-bit: enough to tell one build's assets from another's.
const fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325_u64;
    let mut i = 0;
    while i < bytes.len() {
        hash ^= bytes[i] as u64;
        hash = hash.wrapping_mul(0x0100_0000_01b3);
        i += 1;
    }
    hash
}

/// The file a path names, `Ok(None)` for a path outside the dashboard, and
/// `Err(())` for an unknown file under `/dashboard/`.
fn lookup(path: &str) -> Result<Option<&'static Asset>, ()> {
    match path {
        "/" | "/dashboard" | "/dashboard/" | "/dashboard/index.html" => Ok(Some(&INDEX)),
        "/dashboard/dashboard.css" => Ok(Some(&STYLE)),
        "/dashboard/dashboard.js" => Ok(Some(&SCRIPT)),
        p if p.starts_with("/dashboard/") => Err(()),
        _ => Ok(None),
    }
}

/// Answers a request for the dashboard, or returns `None` when the request
/// belongs to the AWS API (see the module docs for the rule).
pub fn respond(method: &Method, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Option<Response> {
    if (method != Method::GET && method != Method::HEAD)
        || !body.is_empty()
        || headers.contains_key("x-amz-target")
    {
        return None;
    }
    let found = lookup(uri.path());
    if matches!(found, Ok(None)) {
        return None;
    }
    if form_pairs(uri.query().unwrap_or(""))
        .iter()
        .any(|(k, _)| k == "Action")
    {
        return None;
    }
    let Ok(Some(asset)) = found else {
        return Some(not_found(uri.path()));
    };
    let etag = format!("\"{:016x}\"", asset.etag);
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, asset.body).into_response()
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    // Revalidate every time (a 304 is cheap), so an upgraded gateway never
    // serves a page with last version's script.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    security_headers(h);
    Some(resp)
}

fn not_found(path: &str) -> Response {
    let mut resp = (
        StatusCode::NOT_FOUND,
        format!("{path}: no such dashboard file\n"),
    )
        .into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    security_headers(h);
    resp
}

fn security_headers(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(uri: &str) -> Option<Response> {
        respond(&Method::GET, &uri.parse().unwrap(), &HeaderMap::new(), b"")
    }

    fn content_type(r: &Response) -> &str {
        r.headers()[header::CONTENT_TYPE].to_str().unwrap()
    }

    #[test]
    fn root_and_dashboard_paths_serve_the_page() {
        for uri in ["/", "/dashboard", "/dashboard/", "/?tab=queues"] {
            let r = get(uri).unwrap_or_else(|| panic!("{uri} should be the page"));
            assert_eq!(r.status(), StatusCode::OK, "{uri}");
            assert_eq!(content_type(&r), "text/html; charset=utf-8");
            assert!(r.headers().contains_key(header::CONTENT_SECURITY_POLICY));
        }
        let css = get("/dashboard/dashboard.css").unwrap();
        assert_eq!(content_type(&css), "text/css; charset=utf-8");
        let js = get("/dashboard/dashboard.js").unwrap();
        assert_eq!(content_type(&js), "text/javascript; charset=utf-8");
        let head = respond(&Method::HEAD, &"/".parse().unwrap(), &HeaderMap::new(), b"");
        assert_eq!(head.map(|r| r.status()), Some(StatusCode::OK));
    }

    #[test]
    fn query_protocol_requests_on_root_are_left_to_the_aws_api() {
        assert!(get("/?Action=ListQueues").is_none());
        assert!(get("/?Version=2012-11-05&Action=ListQueues").is_none());
        assert!(get("/dashboard?Action=ListQueues").is_none());
        let uri: Uri = "/".parse().unwrap();
        let none = HeaderMap::new();
        assert!(respond(&Method::POST, &uri, &none, b"Action=ListQueues").is_none());
        assert!(respond(&Method::POST, &uri, &none, b"").is_none());
        assert!(respond(&Method::GET, &uri, &none, b"Action=ListQueues").is_none());
        let mut json = HeaderMap::new();
        json.insert(
            "x-amz-target",
            HeaderValue::from_static("AmazonSQS.ListQueues"),
        );
        assert!(respond(&Method::GET, &uri, &json, b"").is_none());
        // Queue URLs (older SDKs post to them) and health checks are not ours.
        assert!(get("/000000000000/orders").is_none());
        assert!(get("/healthz").is_none());
    }

    #[test]
    fn unknown_dashboard_file_is_404() {
        let r = get("/dashboard/missing.js").unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert_eq!(content_type(&r), "text/plain; charset=utf-8");
    }

    #[test]
    fn matching_etag_answers_not_modified() {
        let first = get("/dashboard/dashboard.js").unwrap();
        let etag = first.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        let uri: Uri = "/dashboard/dashboard.js".parse().unwrap();
        let again = respond(&Method::GET, &uri, &headers, b"").unwrap();
        assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("\"0\""));
        let stale = respond(&Method::GET, &uri, &headers, b"").unwrap();
        assert_eq!(stale.status(), StatusCode::OK);
    }

    #[test]
    fn page_refers_only_to_embedded_files() {
        let html = INDEX.body;
        let mut refs = 0;
        for attr in ["href=\"/", "src=\"/"] {
            for (i, _) in html.match_indices(attr) {
                let rest = &html[i + attr.len() - 1..];
                let path = &rest[..rest.find('"').unwrap()];
                assert!(
                    matches!(lookup(path), Ok(Some(_))),
                    "index.html refers to {path}, which is not embedded"
                );
                refs += 1;
            }
        }
        assert_eq!(refs, 2, "the stylesheet and the script");
    }

    #[test]
    fn every_element_the_script_looks_up_exists_in_the_page() {
        let mut ids = 0;
        for (i, _) in SCRIPT.body.match_indices("$('") {
            let rest = &SCRIPT.body[i + 3..];
            let id = &rest[..rest.find('\'').unwrap()];
            assert!(
                INDEX.body.contains(&format!("id=\"{id}\"")),
                "dashboard.js looks up #{id}, which index.html lacks"
            );
            ids += 1;
        }
        assert!(ids > 20, "found only {ids} lookups");
    }

    #[test]
    fn assets_stay_small() {
        let total = INDEX.body.len() + STYLE.body.len() + SCRIPT.body.len();
        assert!(total < 64 * 1024, "dashboard assets are {total} bytes");
    }
}
