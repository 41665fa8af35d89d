//! The status endpoint of `passeur run` on `metrics-address`: `GET /status`
//! (JSON, what `passeur status` prints) and `GET /metrics` (Prometheus
//! text). One task owned by the service; on exit it stops accepting,
//! and its connections are aborted and drained.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::board::Board;

/// The running endpoint.
#[derive(Debug)]
pub struct StatusServer {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl StatusServer {
    /// Listen on `addr`.
    pub async fn start(addr: SocketAddr, board: Board) -> std::io::Result<Self> {
        let listener = TcpListener::bind(addr).await?;
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve(listener, board, rx));
        Ok(Self { stop, task })
    }

    /// Stop accepting, drain the connections, wait for the task.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

fn respond(board: &Board, req: &Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
    let (status, kind, body) = match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            (StatusCode::OK, "text/plain; version=0.0.4", board.metrics())
        }
        (&Method::GET, "/status") => (
            StatusCode::OK,
            "application/json",
            serde_json::to_string(&board.status())
                .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: GET /status or /metrics\n".to_owned(),
        ),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = hyper::header::HeaderValue::from_str(kind) {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    resp
}

async fn serve(listener: TcpListener, board: Board, mut stop: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let board = board.clone();
                conns.spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let r = respond(&board, &req);
                        async move { Ok::<_, Infallible>(r) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// `GET path` from a running service at `addr`; Err: one line.
pub async fn fetch(addr: SocketAddr, path: &str) -> Result<String, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("nothing answers on {addr} (is passeur run going?): {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{addr}: {e}"))?;
    let req = Request::get(path)
        .header(hyper::header::HOST, addr.to_string())
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let get = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| format!("{addr}: {e}"))?;
        let ok = resp.status().is_success();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{addr}: {e}"))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        if ok {
            Ok(text)
        } else {
            Err(format!("{addr}{path}: {}", text.trim()))
        }
    };
    let (result, _) = tokio::join!(get, conn);
    result
}
