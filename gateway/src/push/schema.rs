//! An event stream as the OpenAPI document describes it.
//!
//! OpenAPI 3.1 has no word for a body that is a sequence of events (3.2 adds the media type's
//! `itemSchema`), and declaring the event's JSON as the body's schema says something false: the
//! body is text, framed in lines. So a stream's `text/event-stream` body is declared a string,
//! whose description spells out the framing, and whose `x-itemSchema` is the schema of one
//! event in 3.2's shape: an object of the event's fields (`event`, `id` where the stream sets
//! one, `data`), `data` a string holding one JSON document of the schema its `contentSchema`
//! names. The API tests read each stream against this (`gateway/tests/api/stream_schemas.rs`).

use serde_json::{Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::{PartialSchema, ToSchema};

/// One kind of event a stream sends, and what it carries.
pub struct EventKind {
    /// The `event:` line.
    pub name: &'static str,
    /// What the `id:` line holds, for a stream that sets one.
    pub id: Option<&'static str>,
    /// When the events come.
    pub when: &'static str,
}

/// The body schema of a stream of `kind` events whose data is a `T`.
pub fn stream_of<T: ToSchema>(kind: &EventKind) -> RefOr<Schema> {
    let data = T::name();
    let id_line = kind
        .id
        .map_or(String::new(), |id| format!(" `id: <{id}>`,"));
    let description = format!(
        "Server-Sent Events, UTF-8. {when} Each event is a block of lines ended by a blank line: \
         `event: {name}`,{id_line} and one `data:` line holding one JSON document, a `{data}`. \
         While nothing else is sent, a comment line (`:`) every STREAM_HEARTBEAT_MS (15 s by \
         default) keeps proxies from closing the stream; clients ignore it. `x-itemSchema` is \
         the schema of one event's fields (OpenAPI 3.2's `itemSchema`).",
        when = kind.when,
        name = kind.name,
    );
    ObjectBuilder::new()
        .schema_type(Type::String)
        .content_media_type("text/event-stream")
        .description(Some(description))
        .extensions(Some(
            ExtensionsBuilder::new()
                .add("x-itemSchema", item_schema(kind, &data))
                .build(),
        ))
        .into()
}

/// The schemas a stream of `T` events refers to: `T`'s, and those `T`'s refers to.
pub fn data_schemas<T: ToSchema>(schemas: &mut Vec<(String, RefOr<Schema>)>) {
    schemas.push((T::name().into_owned(), <T as PartialSchema>::schema()));
    T::schemas(schemas);
}

fn item_schema(kind: &EventKind, data: &str) -> Value {
    let mut properties = json!({
        "event": {"const": kind.name},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": format!("#/components/schemas/{data}")},
        },
    });
    let mut required = vec!["event", "data"];
    if let Some(id) = kind.id {
        properties["id"] = json!({"type": "string", "description": id});
        required.push("id");
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    })
}
