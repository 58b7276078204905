//! `--bare-hyper`: the least a gateway built on hyper can cost. This bench binary, re-run with
//! `BARE_PROXY_ARG`, becomes a reverse proxy made of hyper's HTTP/1 server and hyper-util's
//! pooled client and nothing else: no auth, routing, parsing, pricing, log or live feed. The
//! request goes upstream with the mock's key, and the answer comes back as it arrives.

use hyper::{Request, body::Incoming, header, server::conn::http1, service::service_fn};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use std::net::SocketAddr;

pub const BARE_PROXY_ARG: &str = "__bare-hyper-proxy";

/// Serves until killed: `listen`, forwarding to `upstream` with `auth` as the Authorization.
pub fn serve(listen: SocketAddr, upstream: SocketAddr, auth: String) -> anyhow::Result<()> {
    // The stock multi-threaded runtime, one worker per core: how most hyper services run.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        let auth = header::HeaderValue::from_str(&auth)?;
        let listener = tokio::net::TcpListener::bind(listen).await?;
        loop {
            let (stream, _) = listener.accept().await?;
            stream.set_nodelay(true)?;
            let (client, auth) = (client.clone(), auth.clone());
            tokio::spawn(async move {
                let service = service_fn(move |mut req: Request<Incoming>| {
                    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    let uri = format!("http://{upstream}{path}").parse();
                    req.headers_mut()
                        .insert(header::AUTHORIZATION, auth.clone());
                    let client = client.clone();
                    async move {
                        *req.uri_mut() = uri?;
                        anyhow::Ok(client.request(req).await?)
                    }
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    })
}
