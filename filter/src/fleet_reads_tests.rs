use super::*;
use crate::test_fixtures::fleet;
use serde_json::json;

fn parsed(body: &str) -> Value {
    serde_json::from_str(body).unwrap()
}

#[test]
fn tags_merges_reachable_models_newest_first() {
    let details = json!({"format": "gguf", "family": "llama"});
    let expected = json!({"models": [
        {"name": "llama3:latest", "model": "llama3:latest", "modified_at": "t200", "size": 100, "digest": "d1", "details": details},
        {"name": "mistral:latest", "model": "mistral:latest", "modified_at": "t150", "size": 100, "digest": "m1", "details": details},
        {"name": "user/tiny:1b", "model": "user/tiny:1b", "modified_at": "t50", "size": 100, "digest": "t1", "details": details},
    ]});
    assert_eq!(
        parsed(&tags(&fleet())),
        expected,
        "qwen is only on a down instance"
    );
    let empty = ModelMap::default();
    assert_eq!(tags(&empty), r#"{"models":[]}"#);
}

#[test]
fn ps_lists_each_loaded_model_once_by_expiry() {
    let v = parsed(&ps(&fleet()));
    let names: Vec<&str> = v["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["mistral:latest", "llama3:latest", "user/tiny:1b"]);
    assert_eq!(
        v["models"][0],
        json!({"name": "mistral:latest", "model": "mistral:latest", "size": 100, "digest": "m1",
               "details": {"format": "gguf", "family": "llama"}, "expires_at": "e990", "size_vram": 50, "context_length": 4096})
    );
    assert_eq!(ps(&ModelMap::default()), r#"{"models":[]}"#);
}

#[test]
fn version_is_the_lowest_healthy_one() {
    assert_eq!(
        fleet_version(&fleet()),
        "0.9.7",
        "0.9.7 < 0.12.10; c is down"
    );
    assert_eq!(fleet_version(&ModelMap::default()), "0.0.0");
    assert!(version_order("0.5.0-rc1") < version_order("0.5.0"));
    assert!(version_order("0.10.0") > version_order("0.9.99"));
}

#[test]
fn openai_model_list_and_lookup() {
    let v = parsed(&openai_models(&fleet()));
    assert_eq!(v["object"], "list");
    assert_eq!(
        v["data"][0],
        json!({"id": "llama3:latest", "object": "model", "created": 200, "owned_by": "library"})
    );
    assert_eq!(v["data"][2]["owned_by"], "user");
    assert_eq!(
        openai_models(&ModelMap::default()),
        r#"{"object":"list","data":null}"#,
        "Ollama's order: object, then data"
    );
    let a = openai_model(&FleetReads::render(&fleet()), "Llama3");
    assert_eq!(a.status, 200);
    assert_eq!(
        parsed(&a.body),
        json!({"id": "Llama3", "object": "model", "created": 200, "owned_by": "library"})
    );
    let a = openai_model(&FleetReads::render(&fleet()), "qwen");
    assert_eq!(a.status, 404);
    assert_eq!(parsed(&a.body)["error"]["type"], "not_found_error");
    assert_eq!(
        parsed(&a.body)["error"]["message"],
        "model 'qwen:latest' not found"
    );
}

#[test]
fn reads_need_the_map_except_root() {
    let a = answer(&LocalRead::Root, None);
    assert_eq!(
        (a.status, a.content_type, a.body.as_str()),
        (200, TEXT, "Ollama is running")
    );
    let a = answer(&LocalRead::Tags, None);
    assert_eq!(a.status, 503);
    assert!(a.body.contains("model map not ready yet"));
    assert_eq!(
        parsed(&answer(&LocalRead::OpenAiModels, None).body)["error"]["type"],
        "api_error"
    );
    assert_eq!(
        answer(&LocalRead::Version, Some(&FleetReads::render(&fleet()))).body,
        r#"{"version":"0.9.7"}"#
    );
}
