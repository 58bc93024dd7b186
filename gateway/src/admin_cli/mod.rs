//! `tether admin ...`: the admin API from the command line.
//!
//! Each command is one request to the gateway's `/api/` (see the admin API
//! in [`crate::http::admin`]); the answer is printed as an aligned table, or
//! with `--json` as the API's JSON, verbatim. Failures are one line on
//! standard error and exit status 1.
//!
//! * [`client`]: the HTTP client and its one-line errors.
//! * [`table`]: table layout and value formatting.

pub mod client;
pub mod table;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use hyper::Method;
use serde_json::{Value, json};

use client::{AdminClient, CliError, segment};
use table::{Align, Table, cell, excerpt, pairs, seconds, text};

/// `tether admin` options and command.
#[derive(Debug, clap::Args)]
pub struct AdminArgs {
    /// Base URL of the gateway's HTTP listener.
    #[arg(
        long,
        global = true,
        env = "TETHER_ADMIN_URL",
        default_value = "http://127.0.0.1:9324"
    )]
    pub url: String,
    /// User to authenticate as (a user tagged "administrator", or guest from this machine).
    #[arg(
        long,
        global = true,
        env = "TETHER_ADMIN_USER",
        default_value = "guest"
    )]
    pub user: String,
    /// Its password.
    #[arg(
        long,
        global = true,
        env = "TETHER_ADMIN_PASSWORD",
        default_value = "guest",
        hide_env_values = true,
        hide_default_value = true
    )]
    pub password: String,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: AdminCommand,
}

/// The `tether admin` commands.
#[derive(Debug, clap::Subcommand)]
pub enum AdminCommand {
    /// Totals: connections, queues, messages.
    Overview,
    /// Live MQTT and AMQP connections.
    Connections,
    /// Close a connection (MQTT 5: DISCONNECT 0x98; AMQP: connection.close 320).
    CloseConnection {
        /// Its id, as `connections` lists it.
        id: String,
    },
    /// MQTT sessions with their subscriptions.
    Sessions,
    /// Bridges to upstream brokers: state, backlog, counts, last error.
    Bridges,
    /// Exchanges of every vhost.
    Exchanges,
    /// Bindings of every vhost.
    Bindings,
    /// Queues with depth, messages in flight, consumers and rates.
    Queues {
        /// Only these kinds (comma-separated: sqs, amqp, mqtt).
        #[arg(long)]
        kind: Option<String>,
    },
    /// One queue in detail.
    Queue {
        /// The queue.
        name: String,
        /// Its vhost.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Show ready messages without receiving them (nothing changes).
    Peek {
        /// The queue.
        queue: String,
        /// Its vhost.
        #[arg(long, default_value = "/")]
        vhost: String,
        /// How many (1 to 100).
        #[arg(long, default_value_t = 10)]
        count: u32,
    },
    /// Delete every ready message of a queue (SQS queues: in flight too).
    Purge {
        /// The queue.
        queue: String,
        /// Its vhost.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Delete a queue and its messages.
    DeleteQueue {
        /// The queue.
        queue: String,
        /// Its vhost.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Move every message of a dead-letter queue back to the queue it came from.
    Redrive {
        /// The dead-letter queue.
        dlq: String,
        /// Its vhost.
        #[arg(long, default_value = "/")]
        vhost: String,
    },
    /// Users and their tags.
    Users,
    /// Add or update a user; the password is read from standard input.
    AddUser {
        /// The user name.
        name: String,
        /// Tags (comma-separated), e.g. administrator.
        #[arg(long, value_delimiter = ',')]
        tags: Option<Vec<String>>,
    },
    /// Delete a user.
    DeleteUser {
        /// The user name.
        name: String,
    },
    /// Access rules and the default decision.
    Acl,
    /// Print (or save) the gateway's definitions document.
    Export {
        /// Write it to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Apply a definitions document (as `export` writes it).
    Import {
        /// The file.
        file: PathBuf,
    },
}

/// Runs `tether admin ...`; prints the outcome and returns the exit status.
pub fn run(args: AdminArgs) -> ExitCode {
    match execute(&args) {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            if stdout.write_all(out.as_bytes()).is_err() {
                return ExitCode::FAILURE;
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("tether: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One request: method, path under `/api`, optional body.
struct Call {
    method: Method,
    path: String,
    body: Option<Vec<u8>>,
}

impl Call {
    fn get(path: String) -> Self {
        Call {
            method: Method::GET,
            path,
            body: None,
        }
    }

    fn with(method: Method, path: String, body: Option<Vec<u8>>) -> Self {
        Call { method, path, body }
    }
}

fn queue_path(vhost: &str, name: &str) -> String {
    format!("/queues/{}/{}", segment(vhost), segment(name))
}

/// Runs the command; the text to print on success.
fn execute(args: &AdminArgs) -> Result<String, CliError> {
    use AdminCommand as C;
    let call = request_for(&args.command, &mut std::io::stdin().lock())?;
    let client = AdminClient::new(&args.url, &args.user, &args.password)?;
    let reply = client.call(call.method, &call.path, call.body)?;
    if let C::Export { output: Some(path) } = &args.command {
        let doc = parse(&reply.body)?;
        let pretty = serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n";
        std::fs::write(path, pretty)
            .map_err(|e| CliError::Local(format!("cannot write {}: {e}", path.display())))?;
        return Ok(if args.json {
            String::new()
        } else {
            format!("definitions written to {}\n", path.display())
        });
    }
    if args.json {
        let body = String::from_utf8_lossy(&reply.body).into_owned();
        return Ok(if body.is_empty() || body.ends_with('\n') {
            body
        } else {
            body + "\n"
        });
    }
    let v = if reply.body.is_empty() {
        Value::Null
    } else {
        parse(&reply.body)?
    };
    Ok(human(&args.command, &v))
}

/// The request a command makes; `stdin` gives `add-user` its password.
fn request_for(command: &AdminCommand, stdin: &mut dyn Read) -> Result<Call, CliError> {
    use AdminCommand as C;
    Ok(match command {
        C::Overview => Call::get("/overview".into()),
        C::Connections => Call::get("/connections".into()),
        C::CloseConnection { id } => Call::with(
            Method::DELETE,
            format!("/connections/{}", segment(id)),
            None,
        ),
        C::Sessions => Call::get("/sessions".into()),
        C::Bridges => Call::get("/bridges".into()),
        C::Exchanges => Call::get("/exchanges".into()),
        C::Bindings => Call::get("/bindings".into()),
        C::Queues { kind } => Call::get(match kind {
            Some(k) => format!("/queues?kind={}", segment(k)),
            None => "/queues".into(),
        }),
        C::Queue { name, vhost } => Call::get(queue_path(vhost, name)),
        C::Peek {
            queue,
            vhost,
            count,
        } => Call::get(format!("{}/peek?count={count}", queue_path(vhost, queue))),
        C::Purge { queue, vhost } => Call::with(
            Method::POST,
            format!("{}/purge", queue_path(vhost, queue)),
            None,
        ),
        C::DeleteQueue { queue, vhost } => {
            Call::with(Method::DELETE, queue_path(vhost, queue), None)
        }
        C::Redrive { dlq, vhost } => Call::with(
            Method::POST,
            format!("{}/redrive", queue_path(vhost, dlq)),
            None,
        ),
        C::Users => Call::get("/users".into()),
        C::AddUser { name, tags } => {
            let password = read_password(stdin)?;
            let mut body = json!({ "password": password });
            if let Some(tags) = tags {
                body["tags"] = json!(tags);
            }
            Call::with(
                Method::PUT,
                format!("/users/{}", segment(name)),
                Some(body.to_string().into_bytes()),
            )
        }
        C::DeleteUser { name } => {
            Call::with(Method::DELETE, format!("/users/{}", segment(name)), None)
        }
        C::Acl => Call::get("/acl".into()),
        C::Export { .. } => Call::get("/definitions".into()),
        C::Import { file } => {
            let text = std::fs::read(file)
                .map_err(|e| CliError::Local(format!("cannot read {}: {e}", file.display())))?;
            if serde_json::from_slice::<Value>(&text).is_err() {
                return Err(CliError::Local(format!(
                    "{} is not a JSON document (write one with `tether admin export`)",
                    file.display()
                )));
            }
            Call::with(Method::POST, "/definitions".into(), Some(text))
        }
    })
}

fn parse(body: &[u8]) -> Result<Value, CliError> {
    serde_json::from_slice(body)
        .map_err(|e| CliError::Local(format!("the admin API answered with invalid JSON: {e}")))
}

/// Reads a password from standard input (one line, or everything).
fn read_password(stdin: &mut dyn Read) -> Result<String, CliError> {
    let mut input = String::new();
    stdin.read_to_string(&mut input).map_err(|e| {
        CliError::Local(format!("cannot read the password from standard input: {e}"))
    })?;
    let password = input.trim_end_matches(['\r', '\n']);
    if password.is_empty() {
        return Err(CliError::Local(
            "the password is empty (pipe it in: echo -n secret | tether admin add-user NAME)"
                .into(),
        ));
    }
    Ok(password.to_owned())
}

fn rows(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

/// The human rendering of a command's answer.
fn human(command: &AdminCommand, v: &Value) -> String {
    use AdminCommand as C;
    match command {
        C::Overview => {
            let conns = v.get("connections").cloned().unwrap_or(Value::Null);
            pairs(&[
                ("version", cell(v, "version")),
                ("uptime", seconds(v, "uptime_seconds")),
                (
                    "connections",
                    format!(
                        "mqtt {}, amqp {}",
                        cell(&conns, "mqtt"),
                        cell(&conns, "amqp")
                    ),
                ),
                ("queues", cell(v, "queues")),
                ("messages ready", cell(v, "messages_ready")),
                ("messages in flight", cell(v, "messages_in_flight")),
                ("enqueued (total)", cell(v, "enqueued_total")),
                ("delivered (total)", cell(v, "delivered_total")),
                ("dead-lettered (total)", cell(v, "dead_lettered_total")),
            ])
        }
        C::Connections => {
            let now = crate::core::message::now_ms() / 1000;
            let mut t = Table::new(&[
                ("ID", Align::Left),
                ("PROTOCOL", Align::Left),
                ("PEER", Align::Left),
                ("USER", Align::Left),
                ("CLIENT ID", Align::Left),
                ("VHOST", Align::Left),
                ("CONNECTED FOR", Align::Right),
            ]);
            for c in rows(v) {
                let age = c
                    .get("connected_at")
                    .and_then(Value::as_u64)
                    .map(|at| json!({ "s": now.saturating_sub(at) }));
                t.row(vec![
                    cell(c, "id"),
                    cell(c, "protocol"),
                    cell(c, "peer"),
                    cell(c, "user"),
                    cell(c, "client_id"),
                    cell(c, "vhost"),
                    age.map_or("-".into(), |a| seconds(&a, "s")),
                ]);
            }
            t.render()
        }
        C::CloseConnection { id } => format!("closed connection {id}\n"),
        C::Sessions => {
            let mut t = Table::new(&[
                ("CLIENT ID", Align::Left),
                ("CONNECTED", Align::Left),
                ("SUBSCRIPTIONS", Align::Left),
                ("READY", Align::Right),
                ("IN FLIGHT", Align::Right),
                ("EXPIRY", Align::Right),
            ]);
            for s in rows(v) {
                let subs: Vec<String> = s
                    .get("subscriptions")
                    .map(rows)
                    .unwrap_or_default()
                    .iter()
                    .map(|x| format!("{} (qos {})", cell(x, "filter"), cell(x, "qos")))
                    .collect();
                t.row(vec![
                    cell(s, "client_id"),
                    cell(s, "connected"),
                    if subs.is_empty() {
                        "-".into()
                    } else {
                        subs.join(", ")
                    },
                    cell(s, "messages"),
                    cell(s, "messages_in_flight"),
                    seconds(s, "expiry_seconds"),
                ]);
            }
            t.render()
        }
        C::Bridges => {
            let mut t = Table::new(&[
                ("NAME", Align::Left),
                ("KIND", Align::Left),
                ("ADDRESS", Align::Left),
                ("CONNECTED", Align::Left),
                ("BACKLOG", Align::Right),
                ("OUT", Align::Right),
                ("IN", Align::Right),
                ("LAST ERROR", Align::Left),
            ]);
            for b in rows(v) {
                t.row(vec![
                    cell(b, "name"),
                    cell(b, "kind"),
                    cell(b, "address"),
                    cell(b, "connected"),
                    cell(b, "backlog"),
                    cell(b, "forwarded_out"),
                    cell(b, "forwarded_in"),
                    cell(b, "last_error"),
                ]);
            }
            t.render()
        }
        C::Exchanges => {
            let mut t = Table::new(&[
                ("VHOST", Align::Left),
                ("NAME", Align::Left),
                ("TYPE", Align::Left),
                ("DURABLE", Align::Left),
                ("AUTO DELETE", Align::Left),
                ("INTERNAL", Align::Left),
            ]);
            for e in rows(v) {
                t.row(
                    [
                        "vhost",
                        "name",
                        "type",
                        "durable",
                        "auto_delete",
                        "internal",
                    ]
                    .iter()
                    .map(|k| cell(e, k))
                    .collect(),
                );
            }
            t.render()
        }
        C::Bindings => {
            let mut t = Table::new(&[
                ("VHOST", Align::Left),
                ("SOURCE", Align::Left),
                ("DESTINATION", Align::Left),
                ("TYPE", Align::Left),
                ("ROUTING KEY", Align::Left),
                ("ARGUMENTS", Align::Left),
            ]);
            for b in rows(v) {
                let args = match b.get("arguments") {
                    Some(Value::Object(m)) if !m.is_empty() => Value::Object(m.clone()).to_string(),
                    _ => "-".into(),
                };
                t.row(vec![
                    cell(b, "vhost"),
                    cell(b, "source"),
                    cell(b, "destination"),
                    cell(b, "destination_type"),
                    cell(b, "routing_key"),
                    args,
                ]);
            }
            t.render()
        }
        C::Queues { .. } => {
            let mut t = Table::new(&[
                ("VHOST", Align::Left),
                ("NAME", Align::Left),
                ("KIND", Align::Left),
                ("READY", Align::Right),
                ("DELAYED", Align::Right),
                ("IN FLIGHT", Align::Right),
                ("CONSUMERS", Align::Right),
                ("IN/S", Align::Right),
                ("OUT/S", Align::Right),
                ("DEAD LETTERS TO", Align::Left),
            ]);
            for q in rows(v) {
                let rates = q.get("rates").cloned().unwrap_or(Value::Null);
                t.row(vec![
                    cell(q, "vhost"),
                    cell(q, "name"),
                    cell(q, "kind"),
                    cell(q, "messages"),
                    cell(q, "messages_delayed"),
                    cell(q, "messages_in_flight"),
                    cell(q, "consumers"),
                    rate(&rates, "enqueued_per_second"),
                    rate(&rates, "delivered_per_second"),
                    cell(q, "dead_letter_target"),
                ]);
            }
            t.render()
        }
        C::Queue { .. } => {
            let stats = v.get("stats").cloned().unwrap_or(Value::Null);
            let rates = v.get("rates").cloned().unwrap_or(Value::Null);
            let sources: Vec<String> = v
                .get("dead_letter_sources")
                .map(rows)
                .unwrap_or_default()
                .iter()
                .map(text)
                .collect();
            pairs(&[
                ("vhost", cell(v, "vhost")),
                ("name", cell(v, "name")),
                ("kind", cell(v, "kind")),
                ("durable", cell(v, "durable")),
                ("fifo", cell(v, "fifo")),
                ("ready", cell(v, "messages")),
                ("delayed", cell(v, "messages_delayed")),
                ("in flight", cell(v, "messages_in_flight")),
                ("consumers", cell(v, "consumers")),
                ("dead letters to", cell(v, "dead_letter_target")),
                ("max receive count", cell(v, "max_receive_count")),
                (
                    "dead letters from",
                    if sources.is_empty() {
                        "-".into()
                    } else {
                        sources.join(", ")
                    },
                ),
                ("enqueued", cell(&stats, "enqueued")),
                ("delivered", cell(&stats, "delivered")),
                ("acked", cell(&stats, "acked")),
                ("dead-lettered", cell(&stats, "dead_lettered")),
                ("expired", cell(&stats, "expired")),
                ("dropped", cell(&stats, "dropped")),
                ("enqueued/s", rate(&rates, "enqueued_per_second")),
                ("delivered/s", rate(&rates, "delivered_per_second")),
            ])
        }
        C::Peek { .. } => {
            let mut t = Table::new(&[
                ("MESSAGE ID", Align::Left),
                ("RECEIVES", Align::Right),
                ("ENCODING", Align::Left),
                ("BODY", Align::Left),
            ]);
            for m in rows(v) {
                t.row(vec![
                    cell(m, "message_id"),
                    cell(m, "receive_count"),
                    cell(m, "body_encoding"),
                    excerpt(m.get("body").and_then(Value::as_str).unwrap_or(""), 60),
                ]);
            }
            t.render()
        }
        C::Purge { queue, vhost } => format!(
            "purged {} from queue '{queue}' (vhost '{vhost}')\n",
            messages(v, "purged")
        ),
        C::DeleteQueue { queue, vhost } => format!("deleted queue '{queue}' (vhost '{vhost}')\n"),
        C::Redrive { dlq, .. } => {
            let moved = v.get("moved").and_then(Value::as_u64).unwrap_or(0);
            let mut line = format!(
                "moved {} from '{dlq}' back to {}",
                messages(v, "moved"),
                if moved == 1 {
                    "its source queue"
                } else {
                    "their source queues"
                }
            );
            if let Some(n) = v
                .get("not_moved")
                .and_then(Value::as_u64)
                .filter(|n| *n > 0)
            {
                line.push_str(&format!(
                    "; {n} stayed where they are (their source queue no longer exists)"
                ));
            }
            line + "\n"
        }
        C::Users => {
            let mut t = Table::new(&[("NAME", Align::Left), ("TAGS", Align::Left)]);
            for u in rows(v) {
                let tags: Vec<String> = u
                    .get("tags")
                    .map(rows)
                    .unwrap_or_default()
                    .iter()
                    .map(text)
                    .collect();
                t.row(vec![
                    cell(u, "name"),
                    if tags.is_empty() {
                        "-".into()
                    } else {
                        tags.join(", ")
                    },
                ]);
            }
            t.render()
        }
        C::AddUser { name, .. } => format!("user '{name}' saved\n"),
        C::DeleteUser { name } => format!("deleted user '{name}'\n"),
        C::Acl => {
            let mut t = Table::new(&[
                ("USER", Align::Left),
                ("CLIENT ID", Align::Left),
                ("ACTION", Align::Left),
                ("TOPIC", Align::Left),
                ("EFFECT", Align::Left),
            ]);
            let rules = v.get("rules").map(rows).unwrap_or_default();
            for r in rules {
                t.row(
                    ["user", "client_id", "action", "topic", "effect"]
                        .iter()
                        .map(|k| cell(r, k))
                        .collect(),
                );
            }
            format!("{}default: {}\n", t.render(), cell(v, "default"))
        }
        C::Export { .. } => serde_json::to_string_pretty(v).unwrap_or_default() + "\n",
        C::Import { file } => format!("definitions imported from {}\n", file.display()),
    }
}

/// A count field as "1 message" / "N messages".
fn messages(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_u64) {
        Some(1) => "1 message".into(),
        Some(n) => format!("{n} messages"),
        None => "? messages".into(),
    }
}

/// A rate field with one decimal.
fn rate(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_f64) {
        Some(r) => format!("{r:.1}"),
        None => "-".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(command: AdminCommand, stdin: &str) -> Result<Call, CliError> {
        request_for(&command, &mut stdin.as_bytes())
    }

    #[test]
    fn queue_commands_name_the_vhost_and_queue_url_encoded() {
        let c = request(
            AdminCommand::Peek {
                queue: "a b".into(),
                vhost: "/".into(),
                count: 5,
            },
            "",
        )
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::GET, "/queues/%2F/a%20b/peek?count=5")
        );
        let c = request(
            AdminCommand::Redrive {
                dlq: "dlq".into(),
                vhost: "iot".into(),
            },
            "",
        )
        .unwrap();
        assert_eq!(
            (c.method, c.path.as_str()),
            (Method::POST, "/queues/iot/dlq/redrive")
        );
    }

    #[test]
    fn add_user_sends_the_password_from_standard_input_and_the_tags() {
        let c = request(
            AdminCommand::AddUser {
                name: "ops".into(),
                tags: Some(vec!["administrator".into()]),
            },
            "s3cret\n",
        )
        .unwrap();
        assert_eq!((c.method, c.path.as_str()), (Method::PUT, "/users/ops"));
        let body: Value = serde_json::from_slice(&c.body.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"password": "s3cret", "tags": ["administrator"]})
        );
        let untagged = request(
            AdminCommand::AddUser {
                name: "dev".into(),
                tags: None,
            },
            "pw",
        )
        .unwrap();
        let body: Value = serde_json::from_slice(&untagged.body.unwrap()).unwrap();
        assert_eq!(
            body,
            json!({"password": "pw"}),
            "no tags key: existing tags stay"
        );
        let empty = request(
            AdminCommand::AddUser {
                name: "dev".into(),
                tags: None,
            },
            "\n",
        );
        assert!(matches!(empty, Err(CliError::Local(m)) if m.contains("password is empty")));
    }

    #[test]
    fn import_refuses_a_file_that_is_not_json_before_sending_it() {
        let dir = std::env::temp_dir().join(format!("tether-import-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bad = dir.join("defs.toml");
        std::fs::write(&bad, "[[users]]\nname = 'x'\n").unwrap();
        let r = request(AdminCommand::Import { file: bad }, "");
        assert!(matches!(r, Err(CliError::Local(m)) if m.contains("not a JSON document")));
        let good = dir.join("defs.json");
        std::fs::write(&good, r#"{"users": []}"#).unwrap();
        let c = request(AdminCommand::Import { file: good }, "").unwrap();
        assert_eq!((c.method, c.path.as_str()), (Method::POST, "/definitions"));
        let missing = request(
            AdminCommand::Import {
                file: dir.join("missing.json"),
            },
            "",
        );
        assert!(matches!(missing, Err(CliError::Local(m)) if m.contains("cannot read")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn users_and_acl_render_as_tables() {
        let users =
            json!([{"name": "ops", "tags": ["administrator"]}, {"name": "dev", "tags": []}]);
        let out = human(&AdminCommand::Users, &users);
        assert_eq!(out, "NAME  TAGS\nops   administrator\ndev   -\n");
        let acl = json!({
            "rules": [{"user": "dev", "action": "publish", "topic": "dev/#", "effect": "allow"}],
            "default": "deny"
        });
        let out = human(&AdminCommand::Acl, &acl);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1].split_whitespace().collect::<Vec<_>>(),
            ["dev", "-", "publish", "dev/#", "allow"]
        );
        assert_eq!(lines[2], "default: deny");
    }

    #[test]
    fn queue_listing_renders_one_aligned_row_per_queue() {
        let v = json!([
            {"vhost": "/", "name": "orders", "kind": "sqs", "messages": 12, "messages_delayed": 0,
             "messages_in_flight": 1, "consumers": 0, "dead_letter_target": "orders-dlq",
             "rates": {"enqueued_per_second": 2.0, "delivered_per_second": 0.5}},
            {"vhost": "/", "name": "orders-dlq", "kind": "sqs", "messages": 3, "messages_delayed": 0,
             "messages_in_flight": 0, "consumers": 0, "dead_letter_target": null,
             "rates": {"enqueued_per_second": 0.0, "delivered_per_second": 0.0}}
        ]);
        let out = human(&AdminCommand::Queues { kind: None }, &v);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 3, "{out}");
        assert!(lines[0].starts_with("VHOST  NAME"), "{out}");
        assert!(
            lines[1].contains("orders-dlq") && lines[1].contains("2.0"),
            "{out}"
        );
        assert!(lines[2].trim_end().ends_with('-'), "{out}");
        // Every row's READY column ends where the heading does.
        let end = lines[0].find("READY").unwrap() + "READY".len();
        assert_eq!(&lines[1][end - 2..end], "12");
        assert_eq!(&lines[2][end - 1..end], "3");
    }
}
