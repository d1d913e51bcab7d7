//! Requests generated from the gateway's own OpenAPI document (`/api/v1/openapi.json`): valid
//! ones, and ones mutated the ways clients and attackers get things wrong (wrong types,
//! missing and extra fields, huge numbers, odd unicode, undecodable path segments, forged,
//! expired and mis-signed tokens, bodies over the limit, not JSON at all).
//!
//! Whatever comes in, the gateway must never answer 5xx, must answer every 4xx with the JSON
//! error body, must answer only statuses the document lists for the operation, and must write
//! nothing to Redis or the topic when it refuses. A request the document declares valid (every
//! path parameter, the body and the credential as the document describes them) must not be
//! told it is malformed: never 400, 401 or 415, save for a 400 whose message is a rule the
//! operation's description names (a rule between two fields, which a schema cannot state).
//! Valid requests succeed now and then (a sale created, a unit bought), so later cases meet a
//! gateway with state, as in production.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;
use std::time::{Duration, Instant};

use chrono::Utc;
use jsonwebtoken::{EncodingKey, Header};
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use regex::Regex;
use serde_json::{Map, Value, json};

use shared::testing::TopicCounter;

use crate::document::{self, Credential, Operation, RequestBody};
use crate::helpers::{ADMIN_TOKEN, JWT_SECRET, PARTITIONS, TestApp, claims, spawn_app};

/// Cases per run: enough to meet every operation with every kind of mutation many times.
/// `GENERATED_CASES` raises it for a longer hunt.
const CASES: u32 = 300;

/// What tells a client its request is malformed: never the answer to a request the document
/// declares valid (but see [`names_a_rule_of`]).
const MALFORMED: [u16; 3] = [400, 401, 415];

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
    // Answers by whether the request was declared valid, then by status.
    let answers = RefCell::new(BTreeMap::<(bool, u16), u32>::new());
    let cases = std::env::var("GENERATED_CASES")
        .ok()
        .and_then(|cases| cases.parse().ok())
        .unwrap_or(CASES);
    let mut runner = TestRunner::new(ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    let result = runner.run(&world.case_strategy(), |case| {
        let status = runtime.block_on(check(&mut app.borrow_mut(), &world, &case))?;
        *answers
            .borrow_mut()
            .entry((case.valid, status))
            .or_default() += 1;
        Ok(())
    });
    let app = app.into_inner();
    runtime.block_on(async move { drop(app) });
    if let Err(failure) = result {
        panic!("{failure}");
    }
    let answers = answers.into_inner();
    eprintln!("answers by (declared valid, status): {answers:?}");
    // The generator reaches past the front door: some requests succeed, and the refusals come
    // from each gate in turn (the body's validation, the token, the lookup), not one check
    // refusing everything. Rarer refusals (409, 410, 413, 429) come and go with the draw.
    assert!(
        answers.keys().any(|(_, status)| *status < 300),
        "{answers:?}"
    );
    for gate in [400, 401, 404] {
        assert!(
            answers.keys().any(|(_, status)| *status == gate),
            "no {gate}: {answers:?}"
        );
    }
    // What the generator declares valid is valid indeed: some of it succeeds.
    assert!(
        answers
            .keys()
            .any(|(valid, status)| *valid && *status < 300),
        "{answers:?}"
    );
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
        let document = document::fetch(app).await;
        let operations = document::operations(&document);
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
        let segments: Vec<BoxedStrategy<(Segment, bool)>> = operation
            .parameters
            .iter()
            .map(|(name, schema)| self.segment_strategy(name, schema))
            .collect();
        let body = match &operation.body {
            Some(body) => self.body_strategy(body),
            None => prop_oneof![
                4 => Just((Body::None, true)),
                1 => any::<Vec<u8>>().prop_map(|bytes| (Body::Raw { bytes, content_type: "application/octet-stream" }, false)),
            ]
            .boxed(),
        };
        let public = operation.credential.is_none();
        (segments, body, token_strategy(self.users.len()))
            .prop_map(move |(segments, (body, valid_body), token)| {
                let valid_segments = segments.iter().all(|(_, valid)| *valid);
                let valid_token = public || matches!(token, Token::Right(_));
                Case {
                    operation: index,
                    segments: segments.into_iter().map(|(segment, _)| segment).collect(),
                    body,
                    token,
                    valid: valid_segments && valid_body && valid_token,
                }
            })
            .boxed()
    }

    /// A path segment: valid for its schema, an id that exists, or something worse; and
    /// whether it is valid for certain.
    fn segment_strategy(&self, name: &str, schema: &Value) -> BoxedStrategy<(Segment, bool)> {
        let known = match name {
            "sale_id" => self.sale_id.clone(),
            "order_id" => self.order_id.clone(),
            _ => self.users[0].clone(),
        };
        let unsure = |segment| (segment, false);
        prop_oneof![
            3 => valid_value(&self.document, schema).prop_map(|value| (Segment::Encoded(text_of(&value)), true)),
            3 => Just((Segment::Encoded(known), true)),
            1 => odd_text().prop_map(Segment::Encoded).prop_map(unsure),
            1 => "[0-9]{20,40}".prop_map(Segment::Encoded).prop_map(unsure),
            1 => ".{65,300}".prop_map(Segment::Encoded).prop_map(unsure),
            1 => prop::sample::select(vec!["%FF", "%C0%AF", "%00", "%E2%82", "..", "%2F", "%25"])
                .prop_map(|raw| (Segment::Raw(raw.to_owned()), false)),
        ]
        .boxed()
    }

    /// A body, and whether it is valid for certain (a mutation may leave it valid, by chance).
    fn body_strategy(&self, body: &RequestBody) -> BoxedStrategy<(Body, bool)> {
        let valid = valid_value(&self.document, &body.schema);
        let limit = self.body_limit;
        let json = |bytes: &[u8]| Body::Raw {
            bytes: bytes.to_vec(),
            content_type: "application/json",
        };
        prop_oneof![
            6 => valid.clone().prop_map(|value| (Body::Json(value), true)),
            4 => (valid, any::<prop::sample::Index>(), odd_value(), 0..4_u8)
                .prop_map(|(value, field, odd, how)| (Body::Json(mutate(value, field, odd, how)), false)),
            1 => Just((Body::None, !body.required)),
            1 => prop::sample::select(RAW_BODIES.to_vec()).prop_map(move |text| (json(text.as_bytes()), false)),
            1 => any::<Vec<u8>>().prop_map(move |bytes| (json(&bytes), false)),
            1 => Just((json(format!("{{\"name\":\"{}\"}}", "x".repeat(limit)).as_bytes()), false)),
            1 => Just((Body::Raw { bytes: b"{}".to_vec(), content_type: "text/plain" }, false)),
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
    /// Every part as the document describes it: the request must not be called malformed.
    valid: bool,
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
        10 => (0..users).prop_map(Token::Right),
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
    if case.valid && !structural && MALFORMED.contains(&status) {
        prop_assert!(
            status == 400 && names_a_rule_of(operation, &error),
            "{} {} answered {status} to a request the document declares valid: {error}",
            operation.method,
            operation.path
        );
    }
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

/// Whether a 400 is the one refusal a valid request may meet: a rule the schema cannot state,
/// which the operation's description names in the very words of the error's message.
fn names_a_rule_of(operation: &Operation, error: &Value) -> bool {
    error["error"] == "invalid_request"
        && error["message"]
            .as_str()
            .is_some_and(|message| operation.description.contains(message))
}

fn request(
    app: &TestApp,
    world: &World,
    operation: &Operation,
    case: &Case,
) -> reqwest::RequestBuilder {
    let segments: Vec<String> = case
        .segments
        .iter()
        .map(|segment| match segment {
            Segment::Encoded(text) => encode_segment(text),
            Segment::Raw(text) => text.clone(),
        })
        .collect();
    let path = operation.path_with(&segments);
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

/// A value the schema accepts (as far as a schema can say: the operation may still refuse it
/// by a rule its description names, as a sale that ends before it starts).
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
            prop_oneof![Just(minimum), Just(maximum), minimum..=maximum]
                .prop_map(Value::from)
                .boxed()
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

/// A string of the schema's length, matching its pattern (searched for, as JSON Schema does,
/// unless anchored), with the edges drawn often: blank text, the longest allowed.
fn string_value(schema: &Value) -> BoxedStrategy<Value> {
    if schema["format"] == "date-time" {
        return date_time().prop_map(Value::from).boxed();
    }
    let minimum = schema["minLength"].as_u64().map_or(0, |n| n as usize);
    let maximum = schema["maxLength"].as_u64().map_or(64, |n| n as usize);
    let pattern = schema["pattern"].as_str();
    let drawn = match pattern {
        None => text(minimum, maximum),
        Some(pattern) => match pattern.strip_prefix('^').and_then(|p| p.strip_suffix('$')) {
            Some(whole) => matching(whole),
            None => (
                text(0, maximum / 2),
                matching(pattern),
                text(0, maximum / 2),
            )
                .prop_map(|(before, found, after)| before + &found + &after)
                .boxed(),
        },
    };
    let pattern = pattern.map(|pattern| Regex::new(pattern).expect("a regular expression"));
    drawn
        .prop_filter("within the schema's length and pattern", move |text| {
            (minimum..=maximum).contains(&text.chars().count())
                && pattern
                    .as_ref()
                    .is_none_or(|pattern| pattern.is_match(text))
        })
        .prop_map(Value::from)
        .boxed()
}

fn matching(pattern: &str) -> BoxedStrategy<String> {
    proptest::string::string_regex(pattern)
        .expect("the document's patterns are regular expressions")
        .boxed()
}

/// Text of `minimum` to `maximum` characters: any, only white space, or as long as allowed.
fn text(minimum: usize, maximum: usize) -> BoxedStrategy<String> {
    // Some of Unicode's White_Space.
    let blank = prop::sample::select(vec![
        ' ', '\t', '\n', '\u{85}', '\u{A0}', '\u{2007}', '\u{2028}', '\u{3000}',
    ]);
    prop_oneof![
        2 => proptest::collection::vec(any::<char>(), minimum..=maximum),
        1 => proptest::collection::vec(blank, minimum..=maximum),
        1 => proptest::collection::vec(any::<char>(), maximum),
    ]
    .prop_map(String::from_iter)
    .boxed()
}

/// An RFC 3339 date-time: mostly near now (so sales open and close), else any at all, with
/// every separator, offset and precision the format allows.
fn date_time() -> BoxedStrategy<String> {
    let now = Utc::now();
    let near = (-7_200_i64..7_200)
        .prop_map(move |seconds| (now + chrono::Duration::seconds(seconds)).to_rfc3339());
    let date = (0..=9999_u32, 1..=12_u32, 1..=28_u32)
        .prop_map(|(year, month, day)| format!("{year:04}-{month:02}-{day:02}"));
    let time = (0..=23_u32, 0..=59_u32, 0..=59_u32, "(\\.[0-9]{1,9})?").prop_map(
        |(hour, minute, second, fraction)| format!("{hour:02}:{minute:02}:{second:02}{fraction}"),
    );
    let offset = "[Zz]|[+-](0[0-9]|1[0-9]|2[0-3]):[0-5][0-9]";
    let any = (date, prop::sample::select(vec!["T", "t"]), time, offset)
        .prop_map(|(date, separator, time, offset)| format!("{date}{separator}{time}{offset}"));
    prop_oneof![3 => near, 1 => any].boxed()
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
