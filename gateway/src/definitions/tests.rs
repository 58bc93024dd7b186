//! Parsing, validation (every refusal with its path and message), applying
//! and exporting, against an in-memory gateway's real services.

use super::*;
use crate::config::{Config, StorageEngine};
use crate::core::Core;
use tokio_util::sync::CancellationToken;

/// The example password `device-secret` (the device-commands example's default).
const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$9R4RP2altarjIwlroN0EEA$r/lMwextdrMgDzqnQvAqv0MTcdN9fwLxGeQnwBsBXdU";

fn api() -> Arc<Api> {
    let mut config = Config::default();
    config.storage.engine = StorageEngine::Memory;
    config.amqp.vhosts = vec!["/".into(), "iot".into()];
    let store = crate::store::open(&config.storage).expect("memory store");
    let core = Core::new(&config, store).expect("core");
    Api::new(core, &config, CancellationToken::new())
}

fn toml_doc(text: &str) -> Definitions {
    parse(text, Format::Toml).unwrap_or_else(|e| panic!("parses: {e}"))
}

/// The refusal of `text` (TOML) by a fresh gateway, as printed.
fn refusal(text: &str) -> String {
    let api = api();
    validate(&api, &toml_doc(text))
        .map(|_| ())
        .expect_err("the document is refused")
        .to_string()
}

async fn apply_toml(api: &Api, text: &str) -> Result<Summary, DefinitionsError> {
    apply_document(api, &toml_doc(text), "localhost").await
}

fn summary(created: usize, updated: usize, unchanged: usize) -> Summary {
    Summary {
        created,
        updated,
        unchanged,
    }
}

// ---- parsing ----

#[test]
fn unknown_key_is_refused_with_its_entry_path() {
    let e = parse("[[queues]]\nname = \"a\"\nattributs = {}\n", Format::Toml).unwrap_err();
    assert_eq!(e.path, "queues[0].attributs");
    assert!(e.message.contains("unknown field `attributs`"), "{e}");
    let e = parse("[[queus]]\nname = \"a\"\n", Format::Toml).unwrap_err();
    assert!(e.message.contains("unknown field `queus`"), "{e}");
}

#[test]
fn wrong_type_names_the_field() {
    let e = parse(
        "[[queues]]\nname = \"a\"\ndurable = \"yes\"\n",
        Format::Toml,
    )
    .unwrap_err();
    assert_eq!(e.path, "queues[0].durable");
    assert!(e.message.contains("invalid type"), "{e}");
    let e = parse(r#"{"users": [{"name": "a"}]}"#, Format::Json).unwrap_err();
    assert_eq!(e.path, "users[0]");
    assert!(e.message.contains("missing field `password_hash`"), "{e}");
}

#[test]
fn toml_syntax_error_gives_line_and_column_on_one_line() {
    let e = parse("[[queues]]\nname = \n", Format::Toml).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert!(e.message.contains("line 2"), "{e}");
    assert!(!e.to_string().contains('\n'), "{e}");
}

#[test]
fn json_with_trailing_text_is_refused() {
    let e = parse("{} x", Format::Json).unwrap_err();
    assert!(e.message.contains("trailing characters"), "{e}");
}

#[test]
fn file_format_comes_from_the_extension() {
    assert_eq!(Format::of(Path::new("a/defs.toml")), Ok(Format::Toml));
    assert_eq!(Format::of(Path::new("defs.json")), Ok(Format::Json));
    let e = Format::of(Path::new("defs.yaml")).unwrap_err();
    assert_eq!(e, "defs.yaml must be a .toml or .json file");
}

// ---- validation: every refusal names its entry ----

#[tokio::test]
async fn missing_dead_letter_queue_is_named() {
    let e = refusal(
        r#"
        [[queues]]
        name = "a"
        [[queues]]
        name = "orders"
        attributes = { RedrivePolicy = { deadLetterTargetArn = "orders-dlq", maxReceiveCount = 3 } }
        "#,
    );
    assert_eq!(
        e,
        r#"queues[1].attributes.RedrivePolicy: dead-letter queue "orders-dlq" is not defined"#
    );
}

#[tokio::test]
async fn redrive_policy_is_checked_like_sqs_does() {
    let e = refusal(
        r#"
        [[queues]]
        name = "dlq"
        attributes = {}
        [[queues]]
        name = "q"
        attributes = { RedrivePolicy = '{"deadLetterTargetArn":"arn:aws:sqs:us-east-1:000000000000:dlq","maxReceiveCount":0}' }
        "#,
    );
    assert_eq!(
        e,
        "queues[1].attributes.RedrivePolicy: maxReceiveCount must be a whole number from 1 to 1000"
    );
    let e = refusal(
        r#"
        [[queues]]
        name = "q"
        attributes = { RedrivePolicy = { deadLetterTargetArn = "arn:aws:sns:x:y:dlq", maxReceiveCount = 2 } }
        "#,
    );
    assert_eq!(
        e,
        r#"queues[0].attributes.RedrivePolicy: "arn:aws:sns:x:y:dlq" is not an sqs ARN"#
    );
    let e = refusal(
        r#"
        [[queues]]
        name = "dlq.fifo"
        attributes = { FifoQueue = true }
        [[queues]]
        name = "q"
        attributes = { RedrivePolicy = { deadLetterTargetArn = "dlq.fifo", maxReceiveCount = 2 } }
        "#,
    );
    assert_eq!(
        e,
        r#"queues[1].attributes.RedrivePolicy: dead-letter queue "dlq.fifo" is a FIFO queue and "q" is a standard queue; they must be of the same type"#
    );
}

#[tokio::test]
async fn sqs_attribute_values_are_checked_by_the_sqs_service() {
    let e = refusal("[[queues]]\nname = \"q\"\nattributes = { VisibilityTimeout = 50000 }\n");
    assert_eq!(
        e,
        "queues[0].attributes.VisibilityTimeout: Invalid value for the parameter VisibilityTimeout: 50000"
    );
    let e = refusal("[[queues]]\nname = \"q\"\nattributes = { Colour = \"blue\" }\n");
    assert_eq!(e, "queues[0].attributes.Colour: Unknown Attribute Colour.");
    let e = refusal("[[queues]]\nname = \"q\"\nattributes = { FifoQueue = true }\n");
    assert!(
        e.starts_with("queues[0].name: The name of a FIFO queue"),
        "{e}"
    );
    let e = refusal("[[queues]]\nname = \"bad name\"\nattributes = {}\n");
    assert!(
        e.starts_with("queues[0].name: Can only include alphanumeric"),
        "{e}"
    );
    let e = refusal("[[queues]]\nname = \"q\"\nattributes = { DelaySeconds = {} }\n");
    assert!(e.starts_with("queues[0].attributes.DelaySeconds: "), "{e}");
}

#[tokio::test]
async fn an_sqs_queue_entry_cannot_be_an_amqp_one_too() {
    let e = refusal(
        "[[queues]]\nname = \"q\"\narguments = { \"x-max-length\" = 1 }\nattributes = {}\n",
    );
    assert_eq!(
        e,
        "queues[0]: a queue has AMQP `arguments` or SQS `attributes`, not both"
    );
    let e = refusal("[[queues]]\nvhost = \"iot\"\nname = \"q\"\nattributes = {}\n");
    assert_eq!(
        e,
        r#"queues[0].vhost: SQS queues (entries with `attributes`) live in virtual host "/""#
    );
    let e = refusal("[[queues]]\nname = \"q\"\ndurable = false\nattributes = {}\n");
    assert_eq!(e, "queues[0].durable: SQS queues are always durable");
}

#[tokio::test]
async fn amqp_arguments_are_checked_by_the_amqp_front_end() {
    let e = refusal("[[queues]]\nname = \"q\"\narguments = { \"x-message-ttl\" = \"soon\" }\n");
    assert_eq!(
        e,
        "queues[0].arguments: invalid arg 'x-message-ttl': must be an integer"
    );
    let e = refusal("[[queues]]\nname = \"amq.q\"\n");
    assert_eq!(
        e,
        "queues[0].name: the amq. prefix is reserved for server-named queues"
    );
}

#[tokio::test]
async fn unknown_vhost_is_refused() {
    let e = refusal("[[queues]]\nvhost = \"nowhere\"\nname = \"q\"\n");
    assert_eq!(
        e,
        r#"queues[0].vhost: virtual host "nowhere" is not configured (see amqp.vhosts)"#
    );
}

#[tokio::test]
async fn exchanges_are_checked() {
    let e = refusal("[[exchanges]]\nname = \"x\"\ntype = \"round-robin\"\n");
    assert_eq!(
        e,
        r#"exchanges[0].type: unknown exchange type "round-robin" (expected direct, fanout, topic or headers)"#
    );
    let e = refusal("[[exchanges]]\nname = \"amq.mine\"\ntype = \"topic\"\n");
    assert_eq!(
        e,
        "exchanges[0].name: the amq. prefix is reserved for the built-in exchanges"
    );
    let e = refusal("[[exchanges]]\nname = \"amq.topic\"\ntype = \"direct\"\n");
    assert!(
        e.starts_with(
            r#"exchanges[0]: exchange "amq.topic" in vhost "/" exists as a topic exchange"#
        ),
        "{e}"
    );
    let e = refusal("[[exchanges]]\nname = \"t\"\ntype = \"fanout\"\n[[topics]]\nname = \"t\"\n");
    assert_eq!(
        e,
        r#"exchanges[0].name: "t" is an SNS topic; define it under `topics`"#
    );
    let e = refusal(
        "[[exchanges]]\nname = \"x\"\ntype = \"topic\"\n[[exchanges]]\nname = \"x\"\ntype = \"topic\"\n",
    );
    assert_eq!(
        e,
        r#"exchanges[1]: exchange "x" is also defined by exchanges[0]"#
    );
}

#[tokio::test]
async fn binding_ends_must_exist() {
    let e = refusal("[[bindings]]\nsource = \"nope\"\ndestination = \"q\"\n");
    assert_eq!(
        e,
        r#"bindings[0].source: exchange "nope" is not defined in vhost "/""#
    );
    let e = refusal("[[bindings]]\nsource = \"amq.topic\"\ndestination = \"q\"\n");
    assert_eq!(
        e,
        r#"bindings[0].destination: queue "q" is not defined in vhost "/""#
    );
    let e = refusal(
        "[[bindings]]\nsource = \"amq.topic\"\ndestination = \"x\"\ndestination_type = \"exchange\"\n",
    );
    assert_eq!(
        e,
        r#"bindings[0].destination: exchange "x" is not defined in vhost "/""#
    );
    let e = refusal("[[bindings]]\nsource = \"\"\ndestination = \"q\"\n");
    assert!(
        e.starts_with("bindings[0].source: the default exchange"),
        "{e}"
    );
    // Defined in the document is enough; so is an SNS topic as the source.
    let api = api();
    let doc = r#"
        [[queues]]
        name = "q"
        [[topics]]
        name = "t"
        [[bindings]]
        source = "t"
        destination = "q"
        "#;
    assert_eq!(apply_toml(&api, doc).await.unwrap(), summary(3, 0, 0));
    assert_eq!(apply_toml(&api, doc).await.unwrap(), summary(0, 0, 3));
}

#[tokio::test]
async fn topics_and_subscriptions_are_checked_by_the_sns_service() {
    let e = refusal("[[topics]]\nname = \"t\"\nattributes = { Colour = \"blue\" }\n");
    assert_eq!(
        e,
        "topics[0].attributes.Colour: Invalid parameter: AttributeName Colour"
    );
    let e = refusal("[[topics]]\nname = \"t.fifo\"\n");
    assert!(
        e.starts_with("topics[0].name: Fifo Topic names must end with .fifo"),
        "{e}"
    );
    let e = refusal("[[subscriptions]]\ntopic = \"t\"\nprotocol = \"sqs\"\nendpoint = \"q\"\n");
    assert_eq!(e, r#"subscriptions[0].topic: topic "t" is not defined"#);
    let base = "[[topics]]\nname = \"t\"\n[[queues]]\nname = \"q\"\nattributes = {}\n";
    let e = refusal(&format!(
        "{base}[[subscriptions]]\ntopic = \"t\"\nprotocol = \"sqs\"\nendpoint = \"r\"\n"
    ));
    assert_eq!(e, r#"subscriptions[0].endpoint: queue "r" is not defined"#);
    let e = refusal(&format!(
        "{base}[[subscriptions]]\ntopic = \"t\"\nprotocol = \"email\"\nendpoint = \"a@b\"\n"
    ));
    assert_eq!(
        e,
        r#"subscriptions[0].protocol: unknown protocol "email" (expected sqs, http or https)"#
    );
    let e = refusal(&format!(
        "{base}[[subscriptions]]\ntopic = \"t\"\nprotocol = \"http\"\nendpoint = \"ftp://x\"\n"
    ));
    assert_eq!(
        e,
        "subscriptions[0].endpoint: Invalid parameter: Endpoint must match the specified protocol"
    );
    let e = refusal(&format!(
        "{base}[[subscriptions]]\ntopic = \"t\"\nprotocol = \"sqs\"\nendpoint = \"q\"\nattributes = {{ FilterPolicy = {{ plan = \"pro\" }} }}\n"
    ));
    assert!(
        e.starts_with("subscriptions[0].attributes.FilterPolicy: Invalid parameter: "),
        "{e}"
    );
    let e = refusal(&format!(
        "{base}[[subscriptions]]\ntopic = \"t\"\nprotocol = \"sqs\"\nendpoint = \"q\"\nattributes = {{ RawMessageDelivery = \"maybe\" }}\n"
    ));
    assert_eq!(
        e,
        "subscriptions[0].attributes.RawMessageDelivery: Invalid parameter: RawMessageDelivery"
    );
}

#[tokio::test]
async fn rules_users_and_acl_are_checked() {
    let e = refusal(
        "[[rules]]\nname = \"r\"\nsql = \"SELECT FROM\"\nactions = [{ republish = { topic = \"a\" } }]\n",
    );
    assert!(e.starts_with("rules[0].sql: SQL error at position"), "{e}");
    let e = refusal("[[rules]]\nname = \"r\"\nsql = \"SELECT * FROM 'a'\"\nactions = []\n");
    assert_eq!(e, "rules[0].actions: has no actions");
    let e = refusal("[[users]]\nname = \"u\"\npassword_hash = \"secret\"\n");
    assert!(
        e.starts_with("users[0].password_hash: is not an argon2 PHC string"),
        "{e}"
    );
    let e = refusal(&format!(
        "[[users]]\nname = \"u\"\npassword_hash = \"{HASH}\"\n[[users]]\nname = \"u\"\npassword_hash = \"{HASH}\"\n"
    ));
    assert_eq!(e, r#"users[1]: user "u" is also defined by users[0]"#);
    let e = refusal("[[acl]]\naction = \"publish\"\ntopic = \"a/#/b\"\n");
    assert!(e.starts_with("acl[0].topic: "), "{e}");
}

// ---- applying ----

const SAMPLE: &str = r#"
[[queues]]
name = "orders-dlq"
attributes = {}

[[queues]]
name = "orders"
attributes = { VisibilityTimeout = 60, RedrivePolicy = { deadLetterTargetArn = "orders-dlq", maxReceiveCount = 2 } }

[[exchanges]]
name = "logs"
type = "topic"

[[queues]]
name = "errors"
arguments = { "x-message-ttl" = 60000 }

[[bindings]]
source = "logs"
destination = "errors"
routing_key = "*.error"

[[topics]]
name = "events"

[[subscriptions]]
topic = "events"
protocol = "sqs"
endpoint = "orders"
attributes = { RawMessageDelivery = true }

[[rules]]
name = "hot"
sql = "SELECT * FROM 'sensors/#' WHERE t > 50"
actions = [{ republish = { topic = "alerts" } }]
"#;

#[tokio::test]
async fn applying_twice_creates_then_changes_nothing() {
    let api = api();
    // 3 queues, exchange, binding, topic, subscription, rule.
    assert_eq!(apply_toml(&api, SAMPLE).await.unwrap(), summary(8, 0, 0));
    assert_eq!(apply_toml(&api, SAMPLE).await.unwrap(), summary(0, 0, 8));
    let orders = api.core.vhost.queue("orders").expect("orders exists");
    let redrive = orders.settings().redrive.expect("redrive policy");
    assert_eq!(redrive.target.as_str(), "orders-dlq");
    assert_eq!(redrive.max_receive_count, 2);
    assert_eq!(api.core.rules.rules().len(), 1);
}

#[tokio::test]
async fn mutable_attributes_converge_and_omitted_ones_return_to_defaults() {
    let api = api();
    apply_toml(&api, SAMPLE).await.unwrap();
    let changed = SAMPLE.replace(
        "attributes = { VisibilityTimeout = 60, RedrivePolicy = { deadLetterTargetArn = \"orders-dlq\", maxReceiveCount = 2 } }",
        "attributes = { DelaySeconds = 5 }",
    );
    assert_eq!(apply_toml(&api, &changed).await.unwrap(), summary(0, 1, 7));
    let q = api.core.vhost.queue("orders").unwrap();
    let s = q.settings();
    assert_eq!(
        s.visibility_timeout,
        Some(std::time::Duration::from_secs(30))
    );
    assert_eq!(s.delay, std::time::Duration::from_secs(5));
    assert!(s.redrive.is_none(), "the redrive policy was removed");
    let changed = changed.replace(
        "attributes = { RawMessageDelivery = true }",
        "attributes = { FilterPolicy = { kind = [\"paid\"] } }",
    );
    assert_eq!(apply_toml(&api, &changed).await.unwrap(), summary(0, 1, 7));
    let exported = export(&api).await;
    let sub = &exported.subscriptions[0];
    assert_eq!(
        Value::Object(sub.attributes.clone()),
        json!({"FilterPolicy": {"kind": ["paid"]}})
    );
}

#[tokio::test]
async fn immutable_conflicts_are_refused_before_anything_changes() {
    let api = api();
    apply_toml(&api, SAMPLE).await.unwrap();
    let e = apply_toml(
        &api,
        "[[queues]]\nname = \"new\"\n[[queues]]\nname = \"errors\"\narguments = { \"x-message-ttl\" = 1000 }\n",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert_eq!(
        e.to_string(),
        r#"queues[1]: queue "errors" in vhost "/" exists with durable true, auto_delete false, arguments {"x-message-ttl":60000}; a queue's declaration cannot change, delete it first"#
    );
    assert!(api.core.vhost.queue("new").is_none(), "nothing was applied");
    let e = apply_toml(
        &api,
        "[[queues]]\nname = \"orders\"\nattributes = { FifoQueue = true }\n",
    )
    .await
    .unwrap_err();
    // A standard name cannot be FIFO: the name check comes first.
    assert_eq!(e.kind, ErrorKind::Invalid);
    let e = apply_toml(&api, "[[queues]]\nname = \"orders\"\n")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.to_string().contains("exists as an SQS queue"), "{e}");
    let e = apply_toml(&api, "[[queues]]\nname = \"errors\"\nattributes = {}\n")
        .await
        .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Conflict);
    assert!(e.to_string().contains("was declared over AMQP"), "{e}");
    let e = apply_toml(
        &api,
        "[[topics]]\nname = \"events\"\nattributes = { FifoTopic = true }\n",
    )
    .await
    .unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid, "{e}");
}

#[tokio::test]
async fn users_and_acl_apply_and_take_effect() {
    let api = api();
    let doc = format!(
        "acl_default = \"deny\"\n[[users]]\nname = \"device\"\npassword_hash = \"{HASH}\"\ntags = [\"monitoring\"]\n[[acl]]\nuser = \"device\"\naction = \"publish\"\ntopic = \"devices/%c/#\"\n"
    );
    assert_eq!(apply_toml(&api, &doc).await.unwrap(), summary(1, 1, 0));
    assert_eq!(apply_toml(&api, &doc).await.unwrap(), summary(0, 0, 2));
    let auth = &api.core.auth;
    assert_eq!(
        auth.check_login(Some("device"), Some(b"device-secret")),
        Ok(())
    );
    assert_eq!(
        auth.user_tags("device"),
        Some(vec!["monitoring".to_owned()])
    );
    let acl = auth.acl_for(Some("device"), "d1");
    assert!(acl.may_publish("devices/d1/t"));
    assert!(!acl.may_publish("devices/d2/t"));
}

#[tokio::test]
async fn export_then_apply_to_a_fresh_gateway_exports_the_same() {
    let api1 = api();
    apply_toml(&api1, SAMPLE).await.unwrap();
    apply_toml(
        &api1,
        &format!(
            "acl_default = \"allow\"\n[[users]]\nname = \"u\"\npassword_hash = \"{HASH}\"\n[[acl]]\naction = \"subscribe\"\ntopic = \"x/#\"\neffect = \"deny\"\n[[queues]]\nvhost = \"iot\"\nname = \"readings\"\nauto_delete = true\narguments = {{ \"x-max-length\" = 10, \"x-overflow\" = \"reject-publish\", \"x-dead-letter-exchange\" = \"dlx\" }}\n[[queues]]\nname = \"p.fifo\"\nattributes = {{ FifoQueue = true, ContentBasedDeduplication = true }}\n"
        ),
    )
    .await
    .unwrap();
    let first = export(&api1).await;
    assert_eq!(first.queues.len(), 5, "{first:#?}");
    let text = serde_json::to_string(&first).unwrap();
    let api2 = api();
    let again = parse(&text, Format::Json).unwrap();
    apply_document(&api2, &again, "localhost").await.unwrap();
    let second = export(&api2).await;
    assert_eq!(first, second);
    // And the export applied to its own gateway changes nothing.
    let s = apply_document(&api1, &first, "localhost").await.unwrap();
    assert_eq!((s.created, s.updated), (0, 0), "{s:?}");
}

#[tokio::test]
async fn export_names_queues_and_leaves_out_defaults() {
    let api = api();
    apply_toml(&api, SAMPLE).await.unwrap();
    let doc = export(&api).await;
    let orders = doc.queues.iter().find(|q| q.name == "orders").unwrap();
    assert_eq!(
        Value::Object(orders.attributes.clone().unwrap()),
        json!({"VisibilityTimeout": 60, "RedrivePolicy": {"deadLetterTargetArn": "orders-dlq", "maxReceiveCount": 2}})
    );
    let errors = doc.queues.iter().find(|q| q.name == "errors").unwrap();
    assert!(errors.attributes.is_none());
    assert_eq!(
        Value::Object(errors.arguments.clone()),
        json!({"x-message-ttl": 60000})
    );
    assert_eq!(doc.exchanges.len(), 1, "no amq.* exchange and no SNS topic");
    assert_eq!(doc.bindings.len(), 1, "SNS subscriptions are not bindings");
    assert_eq!(doc.subscriptions[0].endpoint, "orders");
    let toml_text = toml::to_string(&doc).expect("exports as TOML too");
    assert_eq!(parse(&toml_text, Format::Toml).unwrap(), doc);
}

#[tokio::test]
async fn the_example_document_applies() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/definitions.toml");
    let text = std::fs::read_to_string(&path).expect("examples/definitions.toml");
    let doc = parse(&text, Format::Toml).unwrap_or_else(|e| panic!("{e}"));
    let api = api();
    let first = apply_document(&api, &doc, "localhost").await.unwrap();
    // Everything is new; the ACL always exists, so it is updated.
    assert_eq!(first, summary(15, 1, 0));
    let second = apply_document(&api, &doc, "localhost").await.unwrap();
    assert_eq!((second.created, second.updated), (0, 0), "{second:?}");
}
