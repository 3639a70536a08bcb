//! The HTTP side: `/metrics` (the last refresh, encoded), `/` (a page that
//! links it), 404 for anything else. HTTP/1.1 by hyper, one task per connection.
use std::{convert::Infallible, sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, Response, StatusCode, header, server::conn::http1, service::service_fn};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use super::{Shared, openmetrics};

/// A client that sends no complete request head in this long is dropped,
/// so idle or slow connections cannot pile up.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

const INDEX: &str = "<!DOCTYPE html>
<html><head><title>numatrace exporter</title></head>
<body><h1>numatrace exporter</h1>
<p>NUMA placement of this machine and its largest processes, for Prometheus:
<a href=\"/metrics\">/metrics</a> (OpenMetrics text).</p>
</body></html>
";

/// Serves until the future `shutdown` completes.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => return,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Out of file descriptors and the like: wait, do not spin.
                eprintln!("numatrace exporter: accepting a connection: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let service = service_fn(move |request| {
                let shared = Arc::clone(&shared);
                async move { Ok::<_, Infallible>(respond(&request, &shared)) }
            });
            // A client that hangs up or talks garbage is its own problem, not the exporter's.
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn respond<B>(request: &Request<B>, shared: &Shared) -> Response<Full<Bytes>> {
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "only GET and HEAD\n".into());
    }
    match request.uri().path() {
        "/metrics" => match openmetrics::render(shared.readings(), shared.own_cost(), shared.kernel_counters()) {
            Ok(text) => with_type(StatusCode::OK, openmetrics::CONTENT_TYPE, text),
            Err(_) => plain(StatusCode::INTERNAL_SERVER_ERROR, "encoding the metrics failed\n".into()),
        },
        "/" => with_type(StatusCode::OK, "text/html; charset=utf-8", INDEX.into()),
        path => plain(StatusCode::NOT_FOUND, format!("{path}: not found; the metrics are at /metrics\n")),
    }
}

fn plain(status: StatusCode, text: String) -> Response<Full<Bytes>> {
    with_type(status, "text/plain; charset=utf-8", text)
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}
