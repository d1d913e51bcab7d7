//! The event streams hold to what the served OpenAPI document (`/api/v1/openapi.json`) says
//! of them: each stream's 200 is `text/event-stream`, and every frame it sends is either a
//! heartbeat comment or one event whose fields (`event`, `id`, a single `data` line) match the
//! route's `x-itemSchema` and whose data, parsed as JSON, matches the schema named there.

use serde_json::{Map, Value, json};

use crate::helpers::{spawn_app_with, test_config};
use crate::sse::{EventStream, Frame};

/// What the document says of one event of the stream at `path`: the schema of its fields and
/// the schema of its data, each ready to validate (a root that carries the components its
/// references point into).
struct Declared {
    fields: jsonschema::Validator,
    data: jsonschema::Validator,
}

impl Declared {
    fn of(document: &Value, path: &str) -> Self {
        let ok = &document["paths"][path]["get"]["responses"]["200"]["content"];
        let media_types: Vec<&String> =
            ok.as_object().expect("a 200 with content").keys().collect();
        assert_eq!(media_types, ["text/event-stream"], "{path}");
        let body = resolve(document, &ok["text/event-stream"]["schema"]);
        assert_eq!(body["type"], "string", "the body is text: {body}");
        let fields = body["x-itemSchema"].clone();
        assert!(fields.is_object(), "{path} declares its events: {body}");
        let data = fields["properties"]["data"]["contentSchema"].clone();
        Self {
            fields: validator(document, fields),
            data: validator(document, data),
        }
    }

    /// Checks one frame: a heartbeat, or an event as declared. Returns whether it was an event.
    fn check(&self, path: &str, frame: &Frame) -> bool {
        assert!(frame.other.is_empty(), "{path}: stray lines {frame:?}");
        if frame.event.is_none() && frame.id.is_none() && frame.data.is_empty() {
            assert!(frame.comments > 0, "{path}: an empty frame");
            return false;
        }
        assert_eq!(
            frame.data.len(),
            1,
            "{path}: one data line per event: {frame:?}"
        );
        let mut fields = Map::new();
        fields.insert("data".into(), json!(frame.data[0]));
        if let Some(event) = &frame.event {
            fields.insert("event".into(), json!(event));
        }
        if let Some(id) = &frame.id {
            fields.insert("id".into(), json!(id));
        }
        let fields = Value::Object(fields);
        assert_valid(&self.fields, &fields, path);
        let data: Value = serde_json::from_str(&frame.data[0]).expect("the data is JSON");
        assert_valid(&self.data, &data, path);
        true
    }
}

fn resolve<'a>(document: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(reference) => {
            let name = reference.trim_start_matches("#/components/schemas/");
            &document["components"]["schemas"][name]
        }
        None => schema,
    }
}

fn validator(document: &Value, schema: Value) -> jsonschema::Validator {
    let mut root = schema;
    root["components"] = document["components"].clone();
    jsonschema::draft202012::new(&root).expect("the declared schema is a valid JSON schema")
}

fn assert_valid(validator: &jsonschema::Validator, instance: &Value, path: &str) {
    let errors: Vec<String> = validator
        .iter_errors(instance)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{path}: {instance} does not match: {errors:?}"
    );
}

/// Reads frames until `events` events and at least one heartbeat came, checking each.
async fn read_against(declared: &Declared, path: &str, stream: &mut EventStream, events: usize) {
    let (mut seen_events, mut heartbeats) = (0, 0);
    while seen_events < events || heartbeats == 0 {
        let frame = stream.next_frame().await.expect("the stream goes on");
        if declared.check(path, &frame) {
            seen_events += 1;
        } else {
            heartbeats += 1;
        }
    }
}

#[tokio::test]
async fn every_frame_of_each_stream_is_what_the_document_declares() {
    let mut config = test_config();
    config.stream_heartbeat_ms = 200.try_into().expect("200 ms > 0");
    let app = spawn_app_with(config).await;
    let document = crate::document::fetch(&app).await;
    let sale = app.create_open_sale(5).await;
    let token = app.token("ivy");
    let order_id = app.buy(&sale, &token).await;

    let live_path = "/api/v1/sales/{sale_id}/live";
    let live = Declared::of(&document, live_path);
    let response = app
        .http
        .get(app.url(&format!("/api/v1/sales/{sale}/live")))
        .send()
        .await
        .expect("live request");
    read_against(&live, live_path, &mut EventStream::of(response), 2).await;

    let order_path = "/api/v1/orders/{order_id}/events";
    let order = Declared::of(&document, order_path);
    let response = app
        .http
        .get(app.url(&format!("/api/v1/orders/{order_id}/events")))
        .bearer_auth(&token)
        .send()
        .await
        .expect("order stream request");
    read_against(&order, order_path, &mut EventStream::of(response), 1).await;
}

#[tokio::test]
async fn every_status_a_stream_answers_is_documented() {
    let mut config = test_config();
    config.max_dashboard_streams_per_ip = 1.try_into().expect("1 > 0");
    config.max_order_streams_per_user = 1.try_into().expect("1 > 0");
    let app = spawn_app_with(config).await;
    let document = crate::document::fetch(&app).await;
    let documented = |path: &str| -> Vec<u16> {
        document["paths"][path]["get"]["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .map(|status| status.parse().expect("a status"))
            .collect()
    };
    let sale = app.create_open_sale(5).await;
    let token = app.token("jo");
    let order_id = app.buy(&sale, &token).await;
    let get = |path: String| app.http.get(app.url(&path));

    let unknown_sale = get("/api/v1/sales/no-such-sale/live".into())
        .send()
        .await
        .expect("an unknown sale");
    let live = format!("/api/v1/sales/{sale}/live");
    let _held = get(live.clone()).send().await.expect("live");
    let live_answers = [
        get(live.clone()).send().await.expect("a second dashboard"),
        unknown_sale,
    ];
    let events = format!("/api/v1/orders/{order_id}/events");
    let _held_too = get(events.clone())
        .bearer_auth(&token)
        .send()
        .await
        .expect("stream");
    let order_answers = [
        get(events.clone())
            .bearer_auth(&token)
            .send()
            .await
            .expect("a second tab"),
        get(events.clone()).send().await.expect("no token"),
        get(events.clone())
            .bearer_auth(app.token("kim"))
            .send()
            .await
            .expect("a stranger"),
    ];
    for (path, answers) in [
        ("/api/v1/sales/{sale_id}/live", &live_answers[..]),
        ("/api/v1/orders/{order_id}/events", &order_answers[..]),
    ] {
        for answer in answers {
            let status = answer.status().as_u16();
            assert!(
                documented(path).contains(&status),
                "{path} answered {status}, documented {:?}",
                documented(path)
            );
        }
    }
    let statuses = |answers: &[reqwest::Response]| -> Vec<u16> {
        answers
            .iter()
            .map(|answer| answer.status().as_u16())
            .collect()
    };
    assert_eq!(statuses(&live_answers), [429, 404]);
    assert_eq!(statuses(&order_answers), [429, 401, 404]);
}
