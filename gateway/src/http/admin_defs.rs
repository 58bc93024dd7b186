//! The admin API's users, ACL and definitions endpoints (JSON in and out,
//! errors as `{"error": code, "message": sentence}`):
//!
//! * `GET /api/users` → `[{"name", "tags"}]` (never hashes);
//!   `GET /api/users/{name}` → one of them;
//!   `PUT /api/users/{name}` with `{"password"}` or `{"password_hash"}` and
//!   optional `"tags"` → 204; `DELETE /api/users/{name}` → 204.
//! * `GET /api/acl` → `{"rules": [...], "default": "allow"|"deny"}`;
//!   `PUT /api/acl` with the same shape replaces it → 204.
//! * `GET /api/definitions` → the running gateway as a definitions document
//!   (`?format=toml` for TOML); `POST /api/definitions` applies one (JSON,
//!   or TOML with a `toml` content type) → `{"created", "updated",
//!   "unchanged"}`; 400 names the bad entry's path, 409 an immutable
//!   conflict with what exists.
//!
//! Changes take effect for the next login or CONNECT and are stored; the
//! response is sent once they are durable. The credential check (the admin
//! guard) is not here: these routes are mounted behind it.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Api;
use crate::config::{AclEffect, AclRuleConfig, UserConfig};
use crate::definitions::{self, ErrorKind, Format};

/// The routes of this module, relative to `/api`; `admin::routes` mounts
/// them behind the admin guard.
pub fn routes() -> Router<Arc<Api>> {
    Router::new()
        .route("/users", get(list_users))
        .route(
            "/users/{name}",
            get(get_user).put(put_user).delete(delete_user),
        )
        .route("/acl", get(get_acl).put(put_acl))
        .route("/definitions", get(get_definitions).post(post_definitions))
}

/// An error response in the admin API's shape.
fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "error": code, "message": message.into() })),
    )
        .into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "bad_request", message)
}

/// Parses a JSON body; the error names the path of a bad field.
fn json_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            format!("the body is not valid: {}", e.inner())
        } else {
            format!("{path}: {}", e.inner())
        }
    })?;
    de.end()
        .map_err(|e| format!("the body is not valid: {e}"))?;
    Ok(value)
}

/// 204 once everything changed so far is durable.
async fn stored(api: &Api) -> Response {
    let store = &api.core.store;
    match crate::store::durable(&**store, store.submitted()).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("the change could not be stored: {e}"),
        ),
    }
}

fn user_json(u: &UserConfig) -> Value {
    json!({ "name": u.name, "tags": u.tags })
}

async fn list_users(State(api): State<Arc<Api>>) -> Response {
    let table = api.core.auth.table();
    let users: Vec<Value> = table.users.values().map(user_json).collect();
    axum::Json(users).into_response()
}

async fn get_user(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    match api.core.auth.table().users.get(&name) {
        Some(u) => axum::Json(user_json(u)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no user \"{name}\""),
        ),
    }
}

/// The body of `PUT /api/users/{name}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserBody {
    password: Option<String>,
    password_hash: Option<String>,
    tags: Option<Vec<String>>,
}

async fn put_user(State(api): State<Arc<Api>>, Path(name): Path<String>, body: Bytes) -> Response {
    let body: UserBody = match json_body(&body) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    if name.is_empty() {
        return bad_request("a user needs a name");
    }
    let password_hash = match (body.password, body.password_hash) {
        (Some(_), Some(_)) => {
            return bad_request("give either password or password_hash, not both");
        }
        (None, None) => return bad_request("give password or password_hash"),
        (Some(p), None) if p.is_empty() => return bad_request("password: must not be empty"),
        (Some(p), None) => {
            // argon2 takes a CPU for tens of milliseconds.
            match tokio::task::spawn_blocking(move || crate::auth::hash_password(p.as_bytes()))
                .await
            {
                Ok(h) => h,
                Err(e) => {
                    return error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        format!("the password could not be hashed: {e}"),
                    );
                }
            }
        }
        (None, Some(h)) => {
            if let Err(e) = crate::auth::check_password_hash(&h) {
                return bad_request(format!("password_hash: {e}"));
            }
            h
        }
    };
    let tags = body
        .tags
        .unwrap_or_else(|| api.core.auth.user_tags(&name).unwrap_or_default());
    api.core.auth.put_users(&[UserConfig {
        name,
        password_hash,
        tags,
    }]);
    stored(&api).await
}

async fn delete_user(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    if !api.core.auth.delete_user(&name) {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no user \"{name}\""),
        );
    }
    stored(&api).await
}

async fn get_acl(State(api): State<Arc<Api>>) -> Response {
    let table = api.core.auth.table();
    axum::Json(json!({ "rules": table.acl, "default": table.acl_default })).into_response()
}

/// The body of `PUT /api/acl`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AclBody {
    rules: Vec<AclRuleConfig>,
    /// Absent: the current default stays.
    #[serde(default)]
    default: Option<AclEffect>,
}

async fn put_acl(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    let body: AclBody = match json_body(&body) {
        Ok(b) => b,
        Err(m) => return bad_request(m),
    };
    for (i, r) in body.rules.iter().enumerate() {
        if let Err(e) = crate::auth::check_acl_topic(&r.topic) {
            return bad_request(format!("rules[{i}].topic: {e}"));
        }
    }
    let default = body
        .default
        .unwrap_or_else(|| api.core.auth.table().acl_default);
    api.core.auth.set_acl(body.rules, default);
    stored(&api).await
}

/// The query of `GET /api/definitions`.
#[derive(Debug, Deserialize)]
struct ExportQuery {
    /// `json` (default) or `toml`.
    format: Option<String>,
}

async fn get_definitions(State(api): State<Arc<Api>>, Query(q): Query<ExportQuery>) -> Response {
    let doc = definitions::export(&api).await;
    match q.format.as_deref() {
        None | Some("json") => axum::Json(doc).into_response(),
        Some("toml") => match toml::to_string(&doc) {
            Ok(text) => {
                let mut resp = text.into_response();
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/toml"),
                );
                resp
            }
            Err(e) => error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("the definitions cannot be written as TOML: {e}"),
            ),
        },
        Some(other) => bad_request(format!(
            "format: unknown format \"{other}\" (expected json or toml)"
        )),
    }
}

async fn post_definitions(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let toml_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("toml"));
    let format = if toml_body {
        Format::Toml
    } else {
        Format::Json
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return bad_request("the body is not UTF-8 text");
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let result = match definitions::parse(text, format) {
        Ok(doc) => definitions::apply_document(&api, &doc, &host).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(summary) => {
            tracing::info!(
                created = summary.created,
                updated = summary.updated,
                unchanged = summary.unchanged,
                "definitions applied over the admin API: {summary}"
            );
            axum::Json(summary).into_response()
        }
        Err(e) => {
            let (status, code) = match e.kind {
                ErrorKind::Invalid => (StatusCode::BAD_REQUEST, "invalid_definitions"),
                ErrorKind::Conflict => (StatusCode::CONFLICT, "conflict"),
                ErrorKind::Failed => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            };
            (
                status,
                axum::Json(json!({ "error": code, "message": e.to_string(), "path": e.path })),
            )
                .into_response()
        }
    }
}
