//! The gateway's OpenAPI document as the tests read it: each operation's method, path, path
//! parameters, body, credential and the statuses it lists.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::Value;

use crate::helpers::TestApp;

/// One operation of the document.
#[derive(Clone, Debug)]
pub struct Operation {
    pub method: Method,
    pub path: String,
    /// What the operation says beyond its schemas (a rule between two fields, say).
    pub description: String,
    /// The path parameters' names and schemas, in path order.
    pub parameters: Vec<(String, Value)>,
    pub body: Option<RequestBody>,
    pub credential: Option<Credential>,
    pub documented: BTreeSet<u16>,
    /// Whether it answers an event stream (and so stays open on success).
    pub is_stream: bool,
}

#[derive(Clone, Debug)]
pub struct RequestBody {
    pub schema: Value,
    /// `false`: a request without a body is valid too.
    pub required: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Credential {
    User,
    Admin,
}

impl Operation {
    /// The path with `segments` in place of its parameters, in order.
    pub fn path_with(&self, segments: &[String]) -> String {
        let mut segments = segments.iter();
        self.path
            .split('/')
            .map(|part| {
                if part.starts_with('{') {
                    segments.next().expect("a segment per parameter").as_str()
                } else {
                    part
                }
            })
            .collect::<Vec<_>>()
            .join("/")
    }
}

/// The document the gateway serves.
pub async fn fetch(app: &TestApp) -> Value {
    let document: Value = app
        .http
        .get(app.url("/api/v1/openapi.json"))
        .send()
        .await
        .expect("the document is served")
        .json()
        .await
        .expect("the document is JSON");
    assert_eq!(document["openapi"], "3.1.0");
    document
}

/// Every operation of the document.
pub fn operations(document: &Value) -> Vec<Operation> {
    let mut found = Vec::new();
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("a path item") {
            let method: Method = method.to_uppercase().parse().expect("an HTTP method");
            let parameters = operation["parameters"]
                .as_array()
                .map(|parameters| {
                    parameters
                        .iter()
                        .filter(|parameter| parameter["in"] == "path")
                        .map(|parameter| {
                            let name = parameter["name"].as_str().expect("a name").to_owned();
                            (name, parameter["schema"].clone())
                        })
                        .collect()
                })
                .unwrap_or_default();
            let request_body = &operation["requestBody"];
            let body = request_body["content"]["application/json"]["schema"]
                .as_object()
                .map(|schema| RequestBody {
                    schema: Value::Object(schema.clone()),
                    required: request_body["required"] == true,
                });
            let credential = operation["security"]
                .as_array()
                .and_then(|schemes| schemes.first())
                .map(|scheme| {
                    if scheme.get("admin_token").is_some() {
                        Credential::Admin
                    } else if scheme.get("user_token").is_some() {
                        Credential::User
                    } else {
                        panic!("an unknown security scheme: {scheme}")
                    }
                });
            let responses = operation["responses"].as_object().expect("responses");
            let documented = responses
                .keys()
                .map(|status| status.parse().expect("a numeric status"))
                .collect();
            let is_stream = responses.values().any(|response| {
                response["content"]
                    .as_object()
                    .is_some_and(|content| content.contains_key("text/event-stream"))
            });
            found.push(Operation {
                method,
                path: path.clone(),
                description: operation["description"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                parameters,
                body,
                credential,
                documented,
                is_stream,
            });
        }
    }
    found
}
