//! The job master's two HTTP faces: the worker API (published on the job's
//! address) and the owner API (status and metrics, on loopback only).

use crate::master::JobMaster;
use async_trait::async_trait;
use http::{HeaderMap, HeaderValue, Request, Response, header};
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tormr_core::encoding::Digest;
use tormr_core::wire::job::{Heartbeat, Join, Lease, Report};
use tormr_net::body::{self, Body, BodyError, read_json};
use tormr_net::{ApiError, Handler};

/// Connections the job master's worker API (and the owner's in-process data
/// layer) accept at once: each worker holds one for its long-poll, and a
/// worker beyond the limit would wait unserved in the accept queue.
pub const WORKER_CONNECTIONS: usize = 8192;

/// Largest control message (a report lists one bucket per partition).
const MAX_BODY: u64 = 4 << 20;

fn json_error(e: BodyError) -> ApiError {
    match e {
        BodyError::TooLarge { .. } => ApiError::too_large(e.to_string()),
        BodyError::Stalled { .. } => ApiError::timeout(e.to_string()),
        other => ApiError::bad_request(other.to_string()),
    }
}

fn bearer(headers: &HeaderMap) -> Result<String, ApiError> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned)
        .ok_or_else(|| ApiError::unauthorized("join the job first (POST /v1/join with a ticket)"))
}

/// What workers call.
pub struct WorkerApi(pub Arc<JobMaster>);

#[async_trait]
impl Handler for WorkerApi {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let jm = &self.0;
        let idle = Duration::from_secs(30);
        let path = request.uri().path().to_owned();
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method().clone(), parts.as_slice()) {
            (http::Method::POST, ["v1", "join"]) => {
                let join: Join = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&jm.join(join).await?))
            }
            (http::Method::POST, ["v1", "lease"]) => {
                let token = bearer(request.headers())?;
                let lease: Lease = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&jm.lease(&token, lease).await?))
            }
            (http::Method::POST, ["v1", "heartbeat"]) => {
                let token = bearer(request.headers())?;
                let hb: Heartbeat = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&jm.heartbeat(&token, hb).await?))
            }
            (http::Method::POST, ["v1", "report"]) => {
                let token = bearer(request.headers())?;
                let report: Report = read_json(request.into_body(), MAX_BODY, idle)
                    .await
                    .map_err(json_error)?;
                Ok(body::json_body(&jm.report(&token, report).await?))
            }
            (http::Method::GET, ["v1", "files", digest]) => {
                let token = bearer(request.headers())?;
                let digest = Digest::parse(digest)
                    .ok_or_else(|| ApiError::bad_request("a job file is named by its SHA-256"))?;
                let path = jm.file(&token, &digest)?;
                let file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| ApiError::internal("opening a job file", e))?;
                let len = file.metadata().await.map(|m| m.len()).unwrap_or(0);
                let mut resp = Response::new(body::stream_body(file));
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                Ok(resp)
            }
            (http::Method::GET, ["v1", "image", digest]) => {
                let token = bearer(request.headers())?;
                let digest = Digest::parse(digest).ok_or_else(|| {
                    ApiError::bad_request("an image chunk is named by its SHA-256")
                })?;
                let (path, offset, len) = jm.image_chunk(&token, &digest)?;
                let mut file = tokio::fs::File::open(&path)
                    .await
                    .map_err(|e| ApiError::internal("opening the image archive", e))?;
                file.seek(std::io::SeekFrom::Start(offset))
                    .await
                    .map_err(|e| ApiError::internal("reading the image archive", e))?;
                let mut resp = Response::new(body::stream_body(file.take(len)));
                resp.headers_mut()
                    .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
                Ok(resp)
            }
            (_, ["v1", "join" | "lease" | "heartbeat" | "report"])
            | (_, ["v1", "files" | "image", _]) => Err(ApiError::method_not_allowed()),
            _ => Err(ApiError::not_found(format!("no such endpoint {path}"))),
        }
    }
}

/// What the owner's browser and tools call, on 127.0.0.1 only.
pub struct OwnerApi(pub Arc<JobMaster>);

#[async_trait]
impl Handler for OwnerApi {
    async fn handle(&self, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
        let jm = &self.0;
        match (request.method().clone(), request.uri().path()) {
            (http::Method::GET, "/v1/status") => Ok(body::json_body(&jm.status())),
            (http::Method::GET, "/metrics") => Ok(crate::status_page::metrics(&jm.status())),
            (http::Method::GET, "/") => Ok(crate::status_page::html(&jm.status())),
            (_, path) => Err(ApiError::not_found(format!("no such endpoint {path}"))),
        }
    }
}
