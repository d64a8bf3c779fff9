//! The small weather API that `l402 demo` and `l402 regtest up` put a price on: `GET /weather/today` (a JSON
//! forecast) and `GET /weather/premium` (text). Plain HTTP on a free loopback port.

use axum::Router;
use axum::routing::get;

fn router() -> Router {
    Router::new()
        .route(
            "/weather/today",
            get(|| async { axum::Json(serde_json::json!({ "city": "Lisbon", "sky": "sunny", "high_c": 24 })) }),
        )
        .route("/weather/premium", get(|| async { "a very expensive forecast" }))
}

/// Serves the API on a free port of 127.0.0.1 for as long as the runtime runs, and returns its base URL.
pub(crate) async fn start() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router()).await });
    Ok(format!("http://{addr}"))
}
