//! SQS responses in the query protocol's XML, from the JSON-shaped results the
//! operations return. Element names follow the SQS 2012-11-05 API.

use serde_json::Value;

use super::aws::Xml;

const XMLNS: &str = "http://queue.amazonaws.com/doc/2012-11-05/";

/// Renders the response to `action`.
pub fn render(action: &str, v: &Value, request_id: &str) -> String {
    let root = format!("{action}Response");
    let result = format!("{action}Result");
    let mut x = Xml::new(&root, XMLNS);
    let has_result = !matches!(
        action,
        "DeleteQueue"
            | "SetQueueAttributes"
            | "PurgeQueue"
            | "DeleteMessage"
            | "ChangeMessageVisibility"
            | "TagQueue"
            | "UntagQueue"
            | "AddPermission"
            | "RemovePermission"
    );
    if has_result {
        x.open(&result);
        if let Value::Object(m) = v {
            for (k, val) in m {
                field(&mut x, action, k, val);
            }
        }
        x.close(&result);
    }
    x.finish(&root, request_id)
}

fn field(x: &mut Xml, action: &str, key: &str, v: &Value) {
    match (key, v) {
        ("QueueUrls" | "queueUrls", Value::Array(items)) => {
            for i in items {
                x.value("QueueUrl", Some(i));
            }
        }
        ("Attributes", Value::Object(m)) => {
            for (k, val) in m {
                x.open("Attribute")
                    .text("Name", k)
                    .value("Value", Some(val))
                    .close("Attribute");
            }
        }
        ("Tags", Value::Object(m)) => {
            for (k, val) in m {
                x.open("Tag")
                    .text("Key", k)
                    .value("Value", Some(val))
                    .close("Tag");
            }
        }
        ("Successful", Value::Array(items)) => {
            let name = match action {
                "SendMessageBatch" => "SendMessageBatchResultEntry",
                "DeleteMessageBatch" => "DeleteMessageBatchResultEntry",
                _ => "ChangeMessageVisibilityBatchResultEntry",
            };
            for i in items {
                object(x, action, name, i);
            }
        }
        ("Failed", Value::Array(items)) => {
            for i in items {
                object(x, action, "BatchResultErrorEntry", i);
            }
        }
        ("Messages", Value::Array(items)) => {
            for i in items {
                object(x, action, "Message", i);
            }
        }
        ("MessageAttributes", Value::Object(m)) => {
            for (k, val) in m {
                x.open("MessageAttribute").text("Name", k).open("Value");
                for f in ["StringValue", "BinaryValue", "DataType"] {
                    x.value(f, val.get(f));
                }
                x.close("Value").close("MessageAttribute");
            }
        }
        ("Results", Value::Array(items)) => {
            for i in items {
                object(x, action, "ListMessageMoveTasksResultEntry", i);
            }
        }
        (_, Value::Object(_)) => object(x, action, key, v),
        (_, Value::Array(items)) => {
            for i in items {
                x.value(key, Some(i));
            }
        }
        _ => {
            x.value(key, Some(v));
        }
    }
}

fn object(x: &mut Xml, action: &str, name: &str, v: &Value) {
    x.open(name);
    if let Value::Object(m) = v {
        for (k, val) in m {
            field(x, action, k, val);
        }
    }
    x.close(name);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn receive_message_renders_messages_and_attributes() {
        let v = json!({"Messages": [{
            "MessageId": "m1", "ReceiptHandle": "r", "MD5OfBody": "x", "Body": "hi <b>",
            "Attributes": {"SentTimestamp": "1"},
            "MessageAttributes": {"k": {"DataType": "String", "StringValue": "v"}}
        }]});
        let doc = render("ReceiveMessage", &v, "req");
        assert!(doc.contains(
            "<ReceiveMessageResponse xmlns=\"http://queue.amazonaws.com/doc/2012-11-05/\">"
        ));
        assert!(doc.contains("<Message>") && doc.contains("<MessageId>m1</MessageId>"));
        assert!(doc.contains("<Body>hi &lt;b&gt;</Body>"));
        assert!(doc.contains("<Attribute><Name>SentTimestamp</Name><Value>1</Value></Attribute>"));
        assert!(doc.contains("<MessageAttribute><Name>k</Name><Value><StringValue>v</StringValue><DataType>String</DataType></Value></MessageAttribute>"));
        assert!(doc.ends_with("<ResponseMetadata><RequestId>req</RequestId></ResponseMetadata></ReceiveMessageResponse>"));
    }

    #[test]
    fn delete_queue_has_no_result_element() {
        let doc = render("DeleteQueue", &json!({}), "req");
        assert!(!doc.contains("DeleteQueueResult"));
    }
}
