//! The response-size cap holds for bodies without a Content-Length too.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use futures_util::stream;
use syncd::config::{Instance, PollSettings};
use syncd::ollama::{OllamaClient, PollError, Tags};

#[tokio::test]
async fn an_endless_chunked_body_fails_at_the_cap() {
    // 64 KiB chunks forever, no Content-Length.
    let endless = || async {
        let chunk = Bytes::from(vec![b' '; 64 << 10]);
        let body = stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
        Body::from_stream(body)
    };
    let app = Router::new().route("/api/tags", get(endless));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let settings = PollSettings {
        timeout: Duration::from_secs(5),
        max_response_bytes: 1 << 20,
        ..PollSettings::default()
    };
    let instance = Instance {
        name: "endless".into(),
        url: format!("http://{addr}"),
        cluster: "endless".into(),
        authority: addr.to_string(),
        ..Default::default()
    };
    let client = OllamaClient::new(OllamaClient::http_client(&settings), &instance, &settings);
    for _ in 0..5 {
        let err = client.get::<Tags>("/api/tags").await.unwrap_err();
        assert!(
            matches!(
                err,
                PollError::TooLarge {
                    limit: 1_048_576,
                    ..
                }
            ),
            "{err}"
        );
    }
}
