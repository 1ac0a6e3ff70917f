//! HTTP over the loopback transport: typed calls, error bodies, limits, reuse.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use async_trait::async_trait;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tormr_core::wire::{Call, Method};
use tormr_net::body::{self, read_json};
use tormr_net::tcp::TcpTransport;
use tormr_net::transport::ServiceSpec;
use tormr_net::{
    ApiError, Body, ClientError, ErrorKind, Handler, HttpClient, Server, ServerConfig, Transport,
};

#[derive(Serialize, Deserialize)]
struct Echo {
    text: String,
}

impl Call for Echo {
    type Response = Echoed;
    const METHOD: Method = Method::Post;
    fn path(&self) -> String {
        "/v1/echo".into()
    }
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Echoed {
    upper: String,
}

struct EchoHandler;

#[async_trait]
impl Handler for EchoHandler {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        match request.uri().path() {
            "/v1/echo" => {
                let echo: Echo = read_json(request.into_body(), 1024, Duration::from_secs(2))
                    .await
                    .map_err(|e| match e {
                        body::BodyError::TooLarge { .. } => ApiError::too_large(e.to_string()),
                        other => ApiError::bad_request(other.to_string()),
                    })?;
                if echo.text == "forbidden" {
                    return Err(ApiError::forbidden("no"));
                }
                Ok(body::json_body(&Echoed {
                    upper: echo.text.to_uppercase(),
                }))
            }
            _ => Err(ApiError::not_found("no such path")),
        }
    }
}

async fn start() -> (Server, HttpClient) {
    let transport: Arc<dyn Transport> = Arc::new(TcpTransport::new());
    let listener = transport.publish(&ServiceSpec::new("echo")).await.unwrap();
    let server = Server::spawn(listener, Arc::new(EchoHandler), ServerConfig::default());
    let client = HttpClient::new(transport, server.address().clone());
    (server, client)
}

#[tokio::test]
async fn typed_calls_reuse_one_connection() {
    let (_server, client) = start().await;
    for i in 0..5 {
        let answer = client
            .call(&Echo {
                text: format!("hi{i}"),
            })
            .await
            .unwrap();
        assert_eq!(
            answer,
            Echoed {
                upper: format!("HI{i}")
            }
        );
    }
    assert_eq!(client.stats().requests(), 5);
    assert_eq!(
        client.stats().connections(),
        1,
        "keep-alive should reuse the connection"
    );
}

#[tokio::test]
async fn errors_arrive_as_codes() {
    let (_server, client) = start().await;
    let err = client
        .call(&Echo {
            text: "forbidden".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("forbidden"));
    assert_eq!(err.kind(), ErrorKind::Refused);

    let err = client
        .call(&Echo {
            text: "x".repeat(5000),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some("too_large"), "{err}");

    let bad = client
        .request(http::Method::POST, "/v1/echo")
        .body(body::full("{not json"))
        .unwrap();
    let err = client.send(bad, Duration::from_secs(5)).await.unwrap_err();
    assert!(matches!(err, ClientError::Api { status: 400, .. }), "{err}");
}

#[tokio::test]
async fn oversized_headers_and_slow_clients_do_not_hurt_the_service() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (server, client) = start().await;
    let addr = server.address().to_string();
    // A client that sends a huge header gets cut off...
    let mut raw = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let huge = format!(
        "GET /v1/echo HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let _ = raw.write_all(huge.as_bytes()).await;
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 431"), "{text}");
    // ...and one that sends half a request and stalls does not block others.
    let mut stall = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stall
        .write_all(b"POST /v1/echo HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let answer = client
        .call(&Echo {
            text: "still".into(),
        })
        .await
        .unwrap();
    assert_eq!(answer.upper, "STILL");
}

#[tokio::test]
async fn dead_peer_is_a_retryable_connect_error() {
    let (server, client) = start().await;
    server.shutdown(Duration::from_secs(1)).await;
    let fresh = HttpClient::new(Arc::new(TcpTransport::new()), client.address().clone());
    let err = fresh.call(&Echo { text: "x".into() }).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    let _ = StatusCode::OK;
}

#[tokio::test]
async fn an_answer_cut_off_mid_body_is_a_retryable_failure_not_a_bad_peer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // A peer that dies while answering: headers promise 100 bytes, 12 come.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = tormr_net::Address::parse(&listener.local_addr().unwrap().to_string()).unwrap();
    let dying = tokio::spawn(async move {
        let (mut peer, _) = listener.accept().await.unwrap();
        let mut request = vec![0u8; 4096];
        let _ = peer.read(&mut request).await;
        peer.write_all(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"upper\": \"",
        )
        .await
        .unwrap();
    });
    let client = HttpClient::new(Arc::new(TcpTransport::new()), address);
    let err = client.call(&Echo { text: "x".into() }).await.unwrap_err();
    dying.await.unwrap();
    assert!(matches!(err, ClientError::CutOff { .. }), "{err}");
    assert!(err.is_retryable(), "{err}");
}
