//! The SQS query protocol (form-encoded `Action=...` requests, XML responses)
//! that older SDKs and the AWS CLI v1 speak, sent by hand over plain HTTP/1.1
//! so the test sees exactly what is on the wire.

use tether_e2e::Gateway;
use tether_e2e::aws::{AttrValue, HttpReply, form, http_request, md5_hex, md5_of_attributes};

const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";
const VERSION: &str = "2012-11-05";

/// POSTs `pairs` as a form to `path`; `Version` is added.
async fn post(gw: &Gateway, path: &str, pairs: &[(&str, &str)]) -> HttpReply {
    let mut all = pairs.to_vec();
    all.push(("Version", VERSION));
    http_request(gw.http.unwrap(), "POST", path, &form(&all))
        .await
        .expect("HTTP request")
}

/// Asserts a successful `<{action}Response>` with its result element (when
/// the action has one) and a request id.
fn assert_ok(r: &HttpReply, action: &str, has_result: bool) {
    assert_eq!(r.status, 200, "{action}: {}", r.body);
    assert!(
        r.header("content-type").is_some_and(|t| t.contains("xml")),
        "{action}: content type {:?}",
        r.header("content-type")
    );
    assert!(
        r.body
            .contains(&format!("<{action}Response xmlns=\"{XMLNS}\">")),
        "{action}: {}",
        r.body
    );
    assert!(
        r.body.trim_end().ends_with(&format!("</{action}Response>")),
        "{}",
        r.body
    );
    if has_result {
        assert!(
            r.body.contains(&format!("<{action}Result>"))
                && r.body.contains(&format!("</{action}Result>")),
            "{action}: no result element: {}",
            r.body
        );
    }
    let rid = elements(&r.body, "RequestId");
    assert!(
        rid.len() == 1 && !rid[0].is_empty(),
        "{action}: request id {rid:?} in {}",
        r.body
    );
}

/// The texts of every `<name>...</name>` element (XML entities decoded).
fn elements(xml: &str, name: &str) -> Vec<String> {
    let re = regex::Regex::new(&format!(r"(?s)<{name}>(.*?)</{name}>")).unwrap();
    re.captures_iter(xml)
        .map(|c| {
            c[1].replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&apos;", "'")
                .replace("&#xD;", "\r")
                .replace("&amp;", "&")
        })
        .collect()
}

fn element(xml: &str, name: &str) -> String {
    let all = elements(xml, name);
    assert_eq!(all.len(), 1, "one <{name}> expected in {xml}");
    all[0].clone()
}

/// `<Attribute><Name>k</Name><Value>v</Value></Attribute>` pairs.
fn attributes(xml: &str) -> Vec<(String, String)> {
    elements(xml, "Attribute")
        .iter()
        .map(|a| (element(a, "Name"), element(a, "Value")))
        .collect()
}

fn attribute(xml: &str, name: &str) -> Option<String> {
    attributes(xml)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

async fn create(gw: &Gateway, name: &str) -> String {
    let r = post(gw, "/", &[("Action", "CreateQueue"), ("QueueName", name)]).await;
    assert_ok(&r, "CreateQueue", true);
    element(&r.body, "QueueUrl")
}

#[tokio::test]
async fn query_create_queue_with_attributes_returns_its_url_in_xml() {
    let gw = Gateway::start();
    let r = post(
        &gw,
        "/",
        &[
            ("Action", "CreateQueue"),
            ("QueueName", "legacy"),
            ("Attribute.1.Name", "VisibilityTimeout"),
            ("Attribute.1.Value", "5"),
            ("Attribute.2.Name", "DelaySeconds"),
            ("Attribute.2.Value", "2"),
            ("Tag.1.Key", "team"),
            ("Tag.1.Value", "iot"),
        ],
    )
    .await;
    assert_ok(&r, "CreateQueue", true);
    let url = element(&r.body, "QueueUrl");
    assert_eq!(
        url,
        format!("http://{}/000000000000/legacy", gw.http.unwrap())
    );
    let attrs = post(
        &gw,
        "/",
        &[
            ("Action", "GetQueueAttributes"),
            ("QueueUrl", &url),
            ("AttributeName.1", "VisibilityTimeout"),
            ("AttributeName.2", "DelaySeconds"),
        ],
    )
    .await;
    assert_ok(&attrs, "GetQueueAttributes", true);
    let mut got = attributes(&attrs.body);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("DelaySeconds".to_owned(), "2".to_owned()),
            ("VisibilityTimeout".to_owned(), "5".to_owned())
        ]
    );
    let tags = post(&gw, "/", &[("Action", "ListQueueTags"), ("QueueUrl", &url)]).await;
    assert_ok(&tags, "ListQueueTags", true);
    let tag = element(&tags.body, "Tag");
    assert_eq!(element(&tag, "Key"), "team");
    assert_eq!(element(&tag, "Value"), "iot");
}

#[tokio::test]
async fn query_send_message_returns_md5_of_body_and_attributes() {
    let gw = Gateway::start();
    let url = create(&gw, "digests").await;
    let body = "reading <21.5> & \"ok\" — é";
    let r = post(
        &gw,
        "/",
        &[
            ("Action", "SendMessage"),
            ("QueueUrl", &url),
            ("MessageBody", body),
            ("MessageAttribute.1.Name", "unit"),
            ("MessageAttribute.1.Value.DataType", "String"),
            ("MessageAttribute.1.Value.StringValue", "celsius"),
            ("MessageAttribute.2.Name", "value"),
            ("MessageAttribute.2.Value.DataType", "Number"),
            ("MessageAttribute.2.Value.StringValue", "21.5"),
            ("MessageAttribute.3.Name", "raw"),
            ("MessageAttribute.3.Value.DataType", "Binary"),
            ("MessageAttribute.3.Value.BinaryValue", "AAEC/w=="),
        ],
    )
    .await;
    assert_ok(&r, "SendMessage", true);
    assert_eq!(
        element(&r.body, "MD5OfMessageBody"),
        md5_hex(body.as_bytes())
    );
    let want = md5_of_attributes([
        ("unit", "String", AttrValue::Text("celsius")),
        ("value", "Number", AttrValue::Text("21.5")),
        ("raw", "Binary", AttrValue::Binary(&[0, 1, 2, 255])),
    ]);
    assert_eq!(element(&r.body, "MD5OfMessageAttributes"), want);
    assert!(!element(&r.body, "MessageId").is_empty());
}

#[tokio::test]
async fn query_receive_message_returns_body_system_and_message_attributes() {
    let gw = Gateway::start();
    let url = create(&gw, "inbox").await;
    let body = "line one\nline <two>";
    let sent = post(
        &gw,
        "/",
        &[
            ("Action", "SendMessage"),
            ("QueueUrl", &url),
            ("MessageBody", body),
            ("MessageAttribute.1.Name", "device"),
            ("MessageAttribute.1.Value.DataType", "String"),
            ("MessageAttribute.1.Value.StringValue", "pico-7"),
        ],
    )
    .await;
    assert_ok(&sent, "SendMessage", true);
    let id = element(&sent.body, "MessageId");
    let r = post(
        &gw,
        "/",
        &[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", &url),
            ("AttributeName.1", "All"),
            ("MessageAttributeName.1", "All"),
            ("MaxNumberOfMessages", "10"),
        ],
    )
    .await;
    assert_ok(&r, "ReceiveMessage", true);
    let msgs = elements(&r.body, "Message");
    assert_eq!(msgs.len(), 1, "{}", r.body);
    let m = &msgs[0];
    assert_eq!(element(m, "MessageId"), id);
    assert_eq!(element(m, "Body"), body);
    assert_eq!(element(m, "MD5OfBody"), md5_hex(body.as_bytes()));
    assert!(!element(m, "ReceiptHandle").is_empty());
    assert_eq!(
        attribute(m, "ApproximateReceiveCount").as_deref(),
        Some("1")
    );
    assert!(attribute(m, "SentTimestamp").is_some_and(|t| t.parse::<u64>().is_ok()));
    assert!(attribute(m, "SenderId").is_some());
    let ma = element(m, "MessageAttribute");
    assert_eq!(element(&ma, "Name"), "device");
    let value = element(&ma, "Value");
    assert_eq!(element(&value, "DataType"), "String");
    assert_eq!(element(&value, "StringValue"), "pico-7");
    assert_eq!(
        element(m, "MD5OfMessageAttributes"),
        md5_of_attributes([("device", "String", AttrValue::Text("pico-7"))])
    );
}

#[tokio::test]
async fn query_receive_on_an_empty_queue_has_an_empty_result() {
    let gw = Gateway::start();
    let url = create(&gw, "empty").await;
    let r = post(
        &gw,
        "/",
        &[("Action", "ReceiveMessage"), ("QueueUrl", &url)],
    )
    .await;
    assert_ok(&r, "ReceiveMessage", true);
    assert!(elements(&r.body, "Message").is_empty(), "{}", r.body);
}

#[tokio::test]
async fn query_send_message_batch_takes_numbered_request_entries() {
    let gw = Gateway::start();
    let url = create(&gw, "batch").await;
    let r = post(
        &gw,
        "/",
        &[
            ("Action", "SendMessageBatch"),
            ("QueueUrl", &url),
            ("SendMessageBatchRequestEntry.1.Id", "first"),
            ("SendMessageBatchRequestEntry.1.MessageBody", "one"),
            ("SendMessageBatchRequestEntry.2.Id", "second"),
            ("SendMessageBatchRequestEntry.2.MessageBody", "two"),
            ("SendMessageBatchRequestEntry.2.DelaySeconds", "0"),
            (
                "SendMessageBatchRequestEntry.2.MessageAttribute.1.Name",
                "k",
            ),
            (
                "SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.DataType",
                "String",
            ),
            (
                "SendMessageBatchRequestEntry.2.MessageAttribute.1.Value.StringValue",
                "v",
            ),
            ("SendMessageBatchRequestEntry.3.Id", "bad"),
            ("SendMessageBatchRequestEntry.3.MessageBody", "late"),
            ("SendMessageBatchRequestEntry.3.DelaySeconds", "901"),
        ],
    )
    .await;
    assert_ok(&r, "SendMessageBatch", true);
    let ok = elements(&r.body, "SendMessageBatchResultEntry");
    assert_eq!(ok.len(), 2, "{}", r.body);
    for e in &ok {
        let body = if element(e, "Id") == "first" {
            "one"
        } else {
            "two"
        };
        assert_eq!(element(e, "MD5OfMessageBody"), md5_hex(body.as_bytes()));
        assert!(!element(e, "MessageId").is_empty());
    }
    let second = ok.iter().find(|e| element(e, "Id") == "second").unwrap();
    assert_eq!(
        element(second, "MD5OfMessageAttributes"),
        md5_of_attributes([("k", "String", AttrValue::Text("v"))])
    );
    let failed = elements(&r.body, "BatchResultErrorEntry");
    assert_eq!(failed.len(), 1, "{}", r.body);
    assert_eq!(element(&failed[0], "Id"), "bad");
    assert_eq!(element(&failed[0], "Code"), "InvalidParameterValue");
    assert_eq!(element(&failed[0], "SenderFault"), "true");
}

#[tokio::test]
async fn query_delete_message_removes_the_received_message() {
    let gw = Gateway::start();
    let url = create(&gw, "deletes").await;
    let sent = post(
        &gw,
        "/",
        &[
            ("Action", "SendMessage"),
            ("QueueUrl", &url),
            ("MessageBody", "bye"),
        ],
    )
    .await;
    assert_ok(&sent, "SendMessage", true);
    let r = post(
        &gw,
        "/",
        &[("Action", "ReceiveMessage"), ("QueueUrl", &url)],
    )
    .await;
    let handle = element(&element(&r.body, "Message"), "ReceiptHandle");
    let del = post(
        &gw,
        "/",
        &[
            ("Action", "DeleteMessage"),
            ("QueueUrl", &url),
            ("ReceiptHandle", &handle),
        ],
    )
    .await;
    assert_ok(&del, "DeleteMessage", false);
    assert!(!del.body.contains("DeleteMessageResult"), "{}", del.body);
    let attrs = post(
        &gw,
        "/",
        &[
            ("Action", "GetQueueAttributes"),
            ("QueueUrl", &url),
            ("AttributeName.1", "All"),
        ],
    )
    .await;
    assert_ok(&attrs, "GetQueueAttributes", true);
    for k in [
        "ApproximateNumberOfMessages",
        "ApproximateNumberOfMessagesNotVisible",
        "ApproximateNumberOfMessagesDelayed",
    ] {
        assert_eq!(attribute(&attrs.body, k).as_deref(), Some("0"), "{k}");
    }
}

#[tokio::test]
async fn query_get_queue_attributes_all_lists_every_attribute() {
    let gw = Gateway::start();
    let url = create(&gw, "described").await;
    let r = post(
        &gw,
        "/",
        &[
            ("Action", "GetQueueAttributes"),
            ("QueueUrl", &url),
            ("AttributeName.1", "All"),
        ],
    )
    .await;
    assert_ok(&r, "GetQueueAttributes", true);
    assert_eq!(
        attribute(&r.body, "QueueArn").as_deref(),
        Some("arn:aws:sqs:us-east-1:000000000000:described")
    );
    assert_eq!(
        attribute(&r.body, "VisibilityTimeout").as_deref(),
        Some("30")
    );
    assert_eq!(
        attribute(&r.body, "ApproximateNumberOfMessages").as_deref(),
        Some("0")
    );
    assert!(attribute(&r.body, "CreatedTimestamp").is_some());
}

#[tokio::test]
async fn query_posted_to_the_queue_url_path_needs_no_queue_url() {
    let gw = Gateway::start();
    create(&gw, "q").await;
    let path = "/000000000000/q";
    let sent = post(
        &gw,
        path,
        &[("Action", "SendMessage"), ("MessageBody", "by path")],
    )
    .await;
    assert_ok(&sent, "SendMessage", true);
    assert_eq!(element(&sent.body, "MD5OfMessageBody"), md5_hex(b"by path"));
    let got = post(&gw, path, &[("Action", "ReceiveMessage")]).await;
    assert_ok(&got, "ReceiveMessage", true);
    let m = element(&got.body, "Message");
    assert_eq!(element(&m, "Body"), "by path");
    let del = post(
        &gw,
        path,
        &[
            ("Action", "DeleteMessage"),
            ("ReceiptHandle", &element(&m, "ReceiptHandle")),
        ],
    )
    .await;
    assert_ok(&del, "DeleteMessage", false);
    let attrs = post(
        &gw,
        path,
        &[("Action", "GetQueueAttributes"), ("AttributeName.1", "All")],
    )
    .await;
    assert_ok(&attrs, "GetQueueAttributes", true);
    assert_eq!(
        attribute(&attrs.body, "ApproximateNumberOfMessagesNotVisible").as_deref(),
        Some("0")
    );
}

#[tokio::test]
async fn query_get_with_the_parameters_in_the_query_string_works() {
    let gw = Gateway::start();
    create(&gw, "got").await;
    let target = format!(
        "/000000000000/got?{}",
        form(&[
            ("Action", "SendMessage"),
            ("MessageBody", "sent with GET & a query"),
            ("Version", VERSION),
        ])
    );
    let r = http_request(gw.http.unwrap(), "GET", &target, "")
        .await
        .unwrap();
    assert_ok(&r, "SendMessage", true);
    assert_eq!(
        element(&r.body, "MD5OfMessageBody"),
        md5_hex("sent with GET & a query".as_bytes())
    );
    let list = format!(
        "/?{}",
        form(&[("Action", "ListQueues"), ("Version", VERSION)])
    );
    let r = http_request(gw.http.unwrap(), "GET", &list, "")
        .await
        .unwrap();
    assert_ok(&r, "ListQueues", true);
    assert_eq!(
        elements(&r.body, "QueueUrl"),
        vec![format!("http://{}/000000000000/got", gw.http.unwrap())]
    );
}

#[tokio::test]
async fn query_error_is_an_error_response_with_the_query_code_and_400() {
    let gw = Gateway::start();
    let r = post(
        &gw,
        "/",
        &[("Action", "GetQueueUrl"), ("QueueName", "missing")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(
        r.body
            .contains(&format!("<ErrorResponse xmlns=\"{XMLNS}\">")),
        "{}",
        r.body
    );
    let e = element(&r.body, "Error");
    assert_eq!(element(&e, "Type"), "Sender");
    assert_eq!(
        element(&e, "Code"),
        "AWS.SimpleQueueService.NonExistentQueue"
    );
    assert!(!element(&e, "Message").is_empty());
    assert!(!element(&r.body, "RequestId").is_empty());
    // The same on an operation addressed by URL path.
    let r = post(
        &gw,
        "/000000000000/missing",
        &[("Action", "SendMessage"), ("MessageBody", "x")],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        element(&element(&r.body, "Error"), "Code"),
        "AWS.SimpleQueueService.NonExistentQueue"
    );
}

#[tokio::test]
async fn query_invalid_parameter_is_an_error_response() {
    let gw = Gateway::start();
    let url = create(&gw, "strict").await;
    let r = post(
        &gw,
        "/",
        &[
            ("Action", "ReceiveMessage"),
            ("QueueUrl", &url),
            ("MaxNumberOfMessages", "11"),
        ],
    )
    .await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(
        element(&element(&r.body, "Error"), "Code"),
        "InvalidParameterValue"
    );
}

#[tokio::test]
async fn query_unsigned_request_is_refused_when_access_keys_are_configured() {
    let (id, secret) = tether_e2e::aws::test_keys();
    let gw = Gateway::builder()
        .config(&format!(
            "[[aws.access_keys]]\nid = \"{id}\"\nsecret = \"{secret}\"\n"
        ))
        .start();
    let r = post(&gw, "/", &[("Action", "ListQueues")]).await;
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("<ErrorResponse"), "{}", r.body);
    assert_eq!(
        element(&element(&r.body, "Error"), "Code"),
        "MissingAuthenticationToken"
    );
}
