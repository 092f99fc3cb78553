//! The OpenAPI document of `/api/v1`, generated from the handlers and types
//! (utoipa), served at `/api/v1/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{alerts, api, deliveries, events, push, records, series};

struct Bearer;

impl Modify for Bearer {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "ingest",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("http.ingest_token"))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some("http.api_token")).build(),
            ),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "floodguard",
        description = "District flood-control monitoring and alerting: live site levels, alerts with their timelines, maintenance windows, flood materials, drills. Write endpoints need `Authorization: Bearer <http.api_token>`. Errors are `{\"error\": \"...\", \"detail\": ...}`."
    ),
    paths(
        api::sites,
        api::site,
        api::clock,
        api::cluster,
        series::series,
        events::events,
        api::reload,
        alerts::list,
        alerts::one,
        alerts::ack,
        alerts::dispose,
        alerts::silences,
        alerts::add_silence,
        alerts::delete_silence,
        alerts::notifications,
        alerts::outbox,
        deliveries::deliveries,
        records::materials,
        records::record,
        records::drills,
        push::readings
    ),
    modifiers(&Bearer)
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn json() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_default()
}
