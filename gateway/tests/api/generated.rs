//! Requests generated from the gateway's own OpenAPI document (`/api/v1/openapi.json`): valid
//! ones, and ones mutated the ways clients and attackers get things wrong (wrong types,
//! missing and extra fields, huge numbers, odd unicode, undecodable path segments, forged,
//! expired and mis-signed tokens, bodies over the limit, not JSON at all).
//!
//! Whatever comes in, the gateway must never answer 5xx, must answer every 4xx with the JSON
//! error body, must answer only statuses the document lists for the operation, and must write
//! nothing to Redis or the topic when it refuses. Valid requests succeed now and then (a sale
//! created, a unit bought), so later cases meet a gateway with state, as in production.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::{Duration, Instant};

use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use reqwest::Method;
use serde_json::{Map, Value, json};

use shared::testing::TopicCounter;

use crate::helpers::{ADMIN_TOKEN, JWT_SECRET, PARTITIONS, TestApp, claims, spawn_app};

/// Cases per run: enough to meet every operation with every kind of mutation many times.
const CASES: u32 = 300;

#[test]
fn generated_requests_never_fail_the_server_and_refusals_write_nothing() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let (app, world) = runtime.block_on(async {
        let app = spawn_app().await;
        let world = World::discover(&app).await;
        (app, world)
    });
    let app = RefCell::new(app);
    let answers = RefCell::new(BTreeMap::<u16, u32>::new());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&world.case_strategy(), |case| {
        let status = runtime.block_on(check(&mut app.borrow_mut(), &world, &case))?;
        *answers.borrow_mut().entry(status).or_default() += 1;
        Ok(())
    });
    let app = app.into_inner();
    runtime.block_on(async move { drop(app) });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let answers = answers.into_inner();
    eprintln!("answers by status: {answers:?}");
    // The generator reaches past the front door: some requests succeed, and the refusals come
    // from each gate in turn (the body's validation, the token, the lookup), not one check
    // refusing everything. Rarer refusals (409, 410, 413, 429) come and go with the draw.
    assert!(answers.keys().any(|status| *status < 300), "{answers:?}");
    for gate in [400, 401, 404] {
        assert!(answers.contains_key(&gate), "no {gate}: {answers:?}");
    }
}

/// One operation of the document.
#[derive(Clone, Debug)]
struct Operation {
    method: Method,
    path: String,
    /// The path parameters' names and schemas, in path order.
    parameters: Vec<(String, Value)>,
    body: Option<Value>,
    credential: Option<Credential>,
    documented: BTreeSet<u16>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Credential {
    User,
    Admin,
}

/// What the generator knows: the document, and ids that exist (so valid requests reach the
/// stock lock, not only the "unknown" refusals).
struct World {
    document: Value,
    operations: Vec<Operation>,
    sale_id: String,
    order_id: String,
    users: Vec<String>,
    body_limit: usize,
    topic: TopicCounter,
}

impl World {
    async fn discover(app: &TestApp) -> Self {
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
        let operations = operations(&document);
        assert!(operations.len() >= 9, "every route is described");
        let sale_id = app.create_open_sale(1_000).await;
        let users: Vec<String> = (0..4).map(|i| format!("generated-buyer-{i}")).collect();
        let bought: Value = app
            .purchase(&sale_id, &app.token(&users[0]))
            .await
            .json()
            .await
            .expect("a purchase answer");
        let order_id = bought["order_id"].as_str().expect("an order id").to_owned();
        app.wait_for_message_count(1, Duration::from_secs(10)).await;
        Self {
            document,
            operations,
            sale_id,
            order_id,
            users,
            body_limit: app.config.body_limit_bytes,
            topic: TopicCounter::new(
                &app.config.kafka.kafka_brokers,
                &app.config.kafka.kafka_topic,
                PARTITIONS.into(),
            ),
        }
    }

    fn case_strategy(&self) -> BoxedStrategy<Case> {
        let per_operation: Vec<BoxedStrategy<Case>> = (0..self.operations.len())
            .map(|index| self.operation_strategy(index))
            .collect();
        proptest::strategy::Union::new(per_operation).boxed()
    }

    fn operation_strategy(&self, index: usize) -> BoxedStrategy<Case> {
        let operation = &self.operations[index];
        let segments: Vec<BoxedStrategy<Segment>> = operation
            .parameters
            .iter()
            .map(|(name, schema)| self.segment_strategy(name, schema))
            .collect();
        let body = match &operation.body {
            Some(schema) => self.body_strategy(schema),
            None => prop_oneof![
                4 => Just(Body::None),
                1 => any::<Vec<u8>>().prop_map(|bytes| Body::Raw { bytes, content_type: "application/octet-stream" }),
            ]
            .boxed(),
        };
        (segments, body, token_strategy(self.users.len()))
            .prop_map(move |(segments, body, token)| Case {
                operation: index,
                segments,
                body,
                token,
            })
            .boxed()
    }

    /// A path segment: valid for its schema, an id that exists, or something worse.
    fn segment_strategy(&self, name: &str, schema: &Value) -> BoxedStrategy<Segment> {
        let known = match name {
            "sale_id" => self.sale_id.clone(),
            "order_id" => self.order_id.clone(),
            _ => self.users[0].clone(),
        };
        prop_oneof![
            3 => valid_value(&self.document, schema).prop_map(|value| Segment::Encoded(text_of(&value))),
            3 => Just(Segment::Encoded(known)),
            1 => odd_text().prop_map(Segment::Encoded),
            1 => "[0-9]{20,40}".prop_map(Segment::Encoded),
            1 => ".{65,300}".prop_map(Segment::Encoded),
            1 => prop::sample::select(vec!["%FF", "%C0%AF", "%00", "%E2%82", "..", "%2F", "%25"])
                .prop_map(|raw| Segment::Raw(raw.to_owned())),
        ]
        .boxed()
    }

    fn body_strategy(&self, schema: &Value) -> BoxedStrategy<Body> {
        let valid = valid_value(&self.document, schema);
        let limit = self.body_limit;
        prop_oneof![
            4 => valid.clone().prop_map(Body::Json),
            4 => (valid, any::<prop::sample::Index>(), odd_value(), 0..4_u8)
                .prop_map(|(value, field, odd, how)| Body::Json(mutate(value, field, odd, how))),
            1 => prop::sample::select(RAW_BODIES.to_vec()).prop_map(|text| Body::Raw {
                bytes: text.as_bytes().to_vec(),
                content_type: "application/json",
            }),
            1 => any::<Vec<u8>>().prop_map(|bytes| Body::Raw { bytes, content_type: "application/json" }),
            1 => Just(Body::Raw {
                bytes: format!("{{\"name\":\"{}\"}}", "x".repeat(limit)).into_bytes(),
                content_type: "application/json",
            }),
            1 => Just(Body::Raw { bytes: b"{}".to_vec(), content_type: "text/plain" }),
        ]
        .boxed()
    }
}

/// Bodies no serialiser writes: numbers past every integer type, a lone surrogate, duplicate
/// keys, truncated and non-object JSON.
const RAW_BODIES: [&str; 9] = [
    r#"{"quantity": 100000000000000000000000000000000000000}"#,
    r#"{"quantity": 1e400}"#,
    r#"{"user_id": "\ud800"}"#,
    r#"{"user_id": "a", "user_id": "b"}"#,
    r#"{"id": "x", "#,
    "[1, 2, 3]",
    "null",
    "\"just a string\"",
    "{\"name\": \"\u{0}\"}",
];

#[derive(Clone, Debug)]
struct Case {
    operation: usize,
    segments: Vec<Segment>,
    body: Body,
    token: Token,
}

#[derive(Clone, Debug)]
enum Segment {
    /// Percent-encoded into one path segment.
    Encoded(String),
    /// Put into the path as is.
    Raw(String),
}

#[derive(Clone, Debug)]
enum Body {
    None,
    Json(Value),
    Raw {
        bytes: Vec<u8>,
        content_type: &'static str,
    },
}

#[derive(Clone, Debug)]
enum Token {
    /// The credential the operation asks for (the user's by index).
    Right(usize),
    /// The other kind of credential: a user's JWT where the admin token is wanted, and back.
    OtherKind,
    Missing,
    Garbage(String),
    SignedWithAnotherSecret,
    Expired,
    NotYetValid,
    AlgorithmNone,
    WithoutSubject,
}

fn token_strategy(users: usize) -> BoxedStrategy<Token> {
    prop_oneof![
        6 => (0..users).prop_map(Token::Right),
        1 => Just(Token::OtherKind),
        1 => Just(Token::Missing),
        1 => "[!-~]{0,80}".prop_map(Token::Garbage),
        1 => Just(Token::SignedWithAnotherSecret),
        1 => Just(Token::Expired),
        1 => Just(Token::NotYetValid),
        1 => Just(Token::AlgorithmNone),
        1 => Just(Token::WithoutSubject),
    ]
    .boxed()
}

/// Sends the case and checks the properties of its answer; returns its status.
async fn check(app: &mut TestApp, world: &World, case: &Case) -> Result<u16, TestCaseError> {
    let operation = &world.operations[case.operation];
    let redis_before = app.redis_fingerprint().await;
    let topic_before = world.topic.count();
    let response = request(app, world, operation, case)
        .send()
        .await
        .map_err(|error| TestCaseError::fail(format!("no answer: {error}")))?;
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    if status == 200 && content_type.starts_with("text/event-stream") {
        // A stream that opened stays open: closing it is all there is to check here (what it
        // sends is push.rs's subject).
        prop_assert!(operation.documented.contains(&status));
        return Ok(status);
    }
    let body = response.bytes().await.unwrap_or_default();
    let shown = String::from_utf8_lossy(&body);
    prop_assert!(status < 500, "{status}: {shown}");
    // A segment that is not one plain segment changes which route the path names (an empty
    // one, a dot segment the URL resolves, raw escapes): then 404 is right whatever the
    // operation documents.
    let structural = case.segments.iter().any(|segment| match segment {
        Segment::Raw(_) => true,
        Segment::Encoded(text) => matches!(text.as_str(), "" | "." | ".."),
    });
    prop_assert!(
        operation.documented.contains(&status) || (structural && status == 404),
        "{} {} answered {status}, which the document does not list: {shown}",
        operation.method,
        operation.path
    );
    if status < 400 {
        if status == 202 {
            // The accepted event is on its way to the topic, and its acknowledgement on its way
            // to Redis; both land before the next case takes its "before" snapshot.
            let deadline = Instant::now() + Duration::from_secs(10);
            while world.topic.count() == topic_before {
                prop_assert!(
                    Instant::now() < deadline,
                    "the accepted event never reached the topic"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            let sale = &world.sale_id;
            prop_assert_eq!(
                app.wait_for_acknowledgements(sale).await,
                0,
                "unacknowledged"
            );
        }
        return Ok(status);
    }
    prop_assert!(
        content_type.starts_with("application/json"),
        "{status} answered {content_type:?}"
    );
    let error: Value = serde_json::from_slice(&body).map_err(|_| {
        TestCaseError::fail(format!("{status} with a body that is not JSON: {shown}"))
    })?;
    prop_assert!(error["error"].is_string(), "no error code: {error}");
    prop_assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "no message: {error}"
    );
    prop_assert!(
        app.redis_fingerprint().await == redis_before,
        "the refusal {error} wrote to Redis"
    );
    prop_assert_eq!(
        world.topic.count(),
        topic_before,
        "the refusal {} published",
        error
    );
    Ok(status)
}

fn request(
    app: &TestApp,
    world: &World,
    operation: &Operation,
    case: &Case,
) -> reqwest::RequestBuilder {
    let mut path = String::new();
    let mut segments = case.segments.iter();
    for part in operation.path.split('/').skip(1) {
        path.push('/');
        if part.starts_with('{') {
            match segments.next().expect("a segment per parameter") {
                Segment::Encoded(text) => path.push_str(&encode_segment(text)),
                Segment::Raw(text) => path.push_str(text),
            }
        } else {
            path.push_str(part);
        }
    }
    let mut request = app.http.request(operation.method.clone(), app.url(&path));
    if let Some(token) = token_text(world, operation.credential, &case.token) {
        request = request.header(reqwest::header::AUTHORIZATION, format!("Bearer {token}"));
    }
    match &case.body {
        Body::None => request,
        Body::Json(value) => request.json(value),
        Body::Raw {
            bytes,
            content_type,
        } => request
            .header(reqwest::header::CONTENT_TYPE, *content_type)
            .body(bytes.clone()),
    }
}

fn token_text(world: &World, credential: Option<Credential>, token: &Token) -> Option<String> {
    let now = jsonwebtoken::get_current_timestamp();
    let user = &world.users[0];
    let signed = |claims: Value, secret: &[u8]| {
        jsonwebtoken::encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret),
        )
        .expect("claims encode")
    };
    let user_token = |index: usize| {
        signed(
            claims(&world.users[index], now, now + 600),
            JWT_SECRET.as_bytes(),
        )
    };
    Some(match token {
        Token::Right(index) => match credential {
            Some(Credential::Admin) => ADMIN_TOKEN.to_owned(),
            Some(Credential::User) | None => user_token(*index),
        },
        Token::OtherKind => match credential {
            Some(Credential::Admin) => user_token(0),
            Some(Credential::User) | None => ADMIN_TOKEN.to_owned(),
        },
        Token::Missing => return None,
        Token::Garbage(text) => text.clone(),
        Token::SignedWithAnotherSecret => signed(
            claims(user, now, now + 600),
            b"another-secret-another-secret-!!",
        ),
        Token::Expired => signed(claims(user, now - 1200, now - 600), JWT_SECRET.as_bytes()),
        Token::NotYetValid => {
            let mut not_yet = claims(user, now, now + 600);
            not_yet["nbf"] = json!(now + 300);
            signed(not_yet, JWT_SECRET.as_bytes())
        }
        Token::AlgorithmNone => {
            // A valid token's claims under the header {"alg":"none","typ":"JWT"}, unsigned.
            let claims = user_token(0);
            let claims = claims.split('.').nth(1).expect("a JWT has claims");
            format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{claims}.")
        }
        Token::WithoutSubject => {
            let mut without_subject = claims(user, now, now + 600);
            without_subject
                .as_object_mut()
                .map(|claims| claims.remove("sub"));
            signed(without_subject, JWT_SECRET.as_bytes())
        }
    })
}

/// Every operation of the document, with its parameters' and body's schemas resolved.
fn operations(document: &Value) -> Vec<Operation> {
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
            let body = operation["requestBody"]["content"]["application/json"]["schema"]
                .as_object()
                .map(|schema| Value::Object(schema.clone()));
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
            let documented = operation["responses"]
                .as_object()
                .expect("responses")
                .keys()
                .map(|status| status.parse().expect("a numeric status"))
                .collect();
            found.push(Operation {
                method,
                path: path.clone(),
                parameters,
                body,
                credential,
                documented,
            });
        }
    }
    found
}

/// A value the schema accepts (as far as a schema can say: `validate()` may still refuse it,
/// as a sale that ends before it starts).
fn valid_value(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    if let Some(reference) = schema["$ref"].as_str() {
        let name = reference.trim_start_matches("#/components/schemas/");
        return valid_value(document, &document["components"]["schemas"][name]);
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let choices: Vec<BoxedStrategy<Value>> = options
            .iter()
            .map(|option| valid_value(document, option))
            .collect();
        return proptest::strategy::Union::new(choices).boxed();
    }
    if let Some(types) = schema["type"].as_array() {
        let choices: Vec<BoxedStrategy<Value>> = types
            .iter()
            .map(|kind| {
                let mut single = schema.clone();
                single["type"] = kind.clone();
                valid_value(document, &single)
            })
            .collect();
        return proptest::strategy::Union::new(choices).boxed();
    }
    match schema["type"].as_str() {
        Some("object") => object_value(document, schema),
        Some("string") => string_value(schema),
        Some("integer") => {
            let minimum = schema["minimum"].as_i64().unwrap_or(i64::MIN);
            let maximum = schema["maximum"].as_i64().unwrap_or(i64::MAX);
            (minimum..=maximum).prop_map(Value::from).boxed()
        }
        Some("null") => Just(Value::Null).boxed(),
        Some("boolean") => any::<bool>().prop_map(Value::from).boxed(),
        _ => panic!("the generator does not know this schema yet: {schema}"),
    }
}

fn object_value(document: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let required: BTreeSet<&str> = schema["required"]
        .as_array()
        .map(|names| names.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .map(|properties| {
            properties
                .iter()
                .map(|(name, property)| {
                    let is_required = required.contains(name.as_str());
                    let name = name.clone();
                    let value = valid_value(document, property)
                        .prop_map(move |value| (name.clone(), value));
                    if is_required {
                        value.prop_map(Some).boxed()
                    } else {
                        proptest::option::of(value).boxed()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    fields
        .prop_map(|fields| Value::Object(fields.into_iter().flatten().collect::<Map<_, _>>()))
        .boxed()
}

fn string_value(schema: &Value) -> BoxedStrategy<Value> {
    if schema["format"] == "date-time" {
        let now = Utc::now();
        return (-7_200_i64..7_200)
            .prop_map(move |seconds| {
                Value::from((now + chrono::Duration::seconds(seconds)).to_rfc3339())
            })
            .boxed();
    }
    if let Some(pattern) = schema["pattern"].as_str() {
        let unanchored = pattern.trim_start_matches('^').trim_end_matches('$');
        return proptest::string::string_regex(unanchored)
            .expect("the document's patterns are regular expressions")
            .prop_map(Value::from)
            .boxed();
    }
    let minimum = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let maximum = schema["maxLength"].as_u64().unwrap_or(64) as usize;
    proptest::collection::vec(any::<char>(), minimum..=maximum)
        .prop_map(|chars| Value::from(chars.into_iter().collect::<String>()))
        .boxed()
}

/// Values that belong nowhere: past every integer type, fractions, wrong kinds, odd text.
fn odd_value() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!(1e308)),
        Just(json!(-1)),
        Just(json!(u64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(0.5)),
        Just(json!(true)),
        Just(Value::Null),
        Just(json!([])),
        Just(json!({"nested": {"deeper": [1, 2, 3]}})),
        odd_text().prop_map(Value::from),
    ]
    .boxed()
}

/// Text that trips code assuming ASCII: direction overrides, combining marks, a BOM,
/// zero-width and control characters, astral planes, full-width letters.
fn odd_text() -> BoxedStrategy<String> {
    prop_oneof![
        prop::sample::select(vec![
            "\u{202E}evil\u{202C}",
            "e\u{301}\u{301}\u{301}",
            "\u{FEFF}sale",
            "a\u{200B}b",
            "\u{0}",
            "\u{7}\u{1B}[31m",
            "\u{1F600}\u{1F4A5}",
            "\u{10FFFF}",
            "ｓａｌｅ",
            "",
            " ",
        ])
        .prop_map(str::to_owned),
        "\\PC{1,40}",
    ]
    .boxed()
}

/// One mutation of a valid object: a field dropped, a field added, a field of the wrong kind,
/// or the whole body replaced by something else.
fn mutate(value: Value, field: prop::sample::Index, odd: Value, how: u8) -> Value {
    let Value::Object(mut object) = value else {
        return odd;
    };
    let names: Vec<String> = object.keys().cloned().collect();
    match (how, names.is_empty()) {
        (0, false) => {
            object.remove(&names[field.index(names.len())]);
        }
        (2, false) => {
            object.insert(names[field.index(names.len())].clone(), odd);
        }
        (1 | 2, _) => {
            object.insert("unexpected".into(), odd);
        }
        _ => return odd,
    }
    Value::Object(object)
}

/// One path segment, percent-encoded as a client library would.
fn encode_segment(text: &str) -> String {
    let mut encoded = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            write!(encoded, "%{byte:02X}").expect("writing to a String");
        }
    }
    encoded
}

fn text_of(value: &Value) -> String {
    value
        .as_str()
        .map_or_else(|| value.to_string(), str::to_owned)
}
