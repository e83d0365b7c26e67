//! Hostile code packages: every attack of the shared catalogue
//! (`fresco_common::archive::hostile`), uploaded every way the API takes code, is refused with
//! 400 and a message naming the problem, and nothing is stored.

use fresco_common::archive::{hostile, Limits};
use serde_json::json;

use crate::common::*;

#[actix_web::test]
async fn every_hostile_package_is_400_with_its_reason_and_nothing_is_stored() {
    let api = TestApi::start().await;
    api.runtime("py", json!({})).await;
    api.function(ALICE, "f", "py", json!({})).await;
    let original =
        api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"]["code"].clone();
    let before = api.stored("proj-a").await;
    let limits = Limits {
        max_entries: MAX_ARCHIVE_ENTRIES,
        max_unpacked_bytes: MAX_UNPACKED_BYTES as u64,
    };
    let samples = hostile::samples(limits, "/tmp/fresco-never-written");
    assert!(samples.len() >= 40, "{} samples", samples.len());
    for sample in samples {
        let label = &sample.label;
        assert!(
            sample.bytes.len() <= MAX_PACKAGE_BYTES,
            "{label}: {} bytes, over the upload limit",
            sample.bytes.len()
        );
        let content_type = if label.starts_with("zip") {
            "application/zip"
        } else {
            "application/gzip"
        };
        for call in [
            post("/v1/functions")
                .by(ALICE)
                .upload(&json!({"name": "g", "runtime": "py"}), Some(&sample.bytes)),
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw(content_type, sample.bytes.clone()),
            patch("/v1/functions/f")
                .by(ALICE)
                .upload(&json!({"description": "changed"}), Some(&sample.bytes)),
        ] {
            let reply = api.send(call).await;
            let reply = Reply {
                label: format!("{label}: {}", reply.label),
                ..reply
            };
            reply.error(400, &sample.refusal);
        }
        assert_eq!(
            api.stored("proj-a").await,
            before,
            "{label}: something was stored"
        );
    }
    let f = api.send(get("/v1/functions/f").by(ALICE)).await.ok(200)["function"].clone();
    assert_eq!((&f["code"], &f["description"]), (&original, &json!("")));
    api.send(get("/v1/functions/g").by(ALICE))
        .await
        .error(404, "function g could not be found");
    // Odd modes are not an attack: the package is accepted (the agent normalises them).
    for (label, bytes) in hostile::accepted_samples() {
        let content_type = if label.starts_with("zip") {
            "application/zip"
        } else {
            "application/gzip"
        };
        api.send(
            put("/v1/functions/f/code")
                .by(ALICE)
                .raw(content_type, bytes),
        )
        .await
        .ok(200);
    }
}
