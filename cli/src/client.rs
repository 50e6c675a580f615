//! Connecting to the control plane: the channel (plaintext on loopback, TLS otherwise) and the
//! bearer token on every call.

use std::net::IpAddr;
use std::time::Duration;

use castplane_proto::v1::account_service_client::AccountServiceClient;
use castplane_proto::v1::action_service_client::ActionServiceClient;
use castplane_proto::v1::catalog_service_client::CatalogServiceClient;
use castplane_proto::v1::login_service_client::LoginServiceClient;
use castplane_proto::v1::media_library_service_client::MediaLibraryServiceClient;
use castplane_proto::v1::media_service_service_client::MediaServiceServiceClient;
use castplane_proto::v1::node_service_client::NodeServiceClient;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::config::Settings;
use crate::error::{CliError, Result, chain};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// For unary calls and for the first response of a stream; a watched stream may then run on.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);
const KEEPALIVE: Duration = Duration::from_secs(30);

/// Adds `authorization: Bearer <token>` to each call and, when castctl exports traces, the
/// W3C `traceparent` of the command's span, so the control plane continues castctl's trace.
#[derive(Clone)]
pub struct BearerAuth {
    authorization: MetadataValue<Ascii>,
    traced: bool,
}

impl Interceptor for BearerAuth {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        if self.traced {
            let traceparent = castplane_telemetry::current_traceparent();
            if !traceparent.is_empty()
                && let Ok(value) = MetadataValue::try_from(traceparent)
            {
                request.metadata_mut().insert("traceparent", value);
            }
        }
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, BearerAuth>;

/// One client per API service, sharing one connection.
pub struct Api {
    pub accounts: AccountServiceClient<Authed>,
    pub catalog: CatalogServiceClient<Authed>,
    pub media: MediaServiceServiceClient<Authed>,
    pub actions: ActionServiceClient<Authed>,
    pub nodes: NodeServiceClient<Authed>,
    pub logins: LoginServiceClient<Authed>,
    pub library: MediaLibraryServiceClient<Authed>,
}

pub async fn connect(settings: &Settings) -> Result<Api> {
    let token = settings.require_token()?;
    let mut auth = MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| {
        CliError::usage("the API token contains characters that cannot be sent in a header")
    })?;
    // Keeps the value out of any Debug output of the request.
    auth.set_sensitive(true);
    let channel = channel(settings).await?;
    let auth = BearerAuth {
        authorization: auth,
        traced: castplane_telemetry::traces::export_configured(),
    };
    Ok(Api {
        accounts: AccountServiceClient::with_interceptor(channel.clone(), auth.clone()),
        catalog: CatalogServiceClient::with_interceptor(channel.clone(), auth.clone()),
        media: MediaServiceServiceClient::with_interceptor(channel.clone(), auth.clone()),
        actions: ActionServiceClient::with_interceptor(channel.clone(), auth.clone()),
        nodes: NodeServiceClient::with_interceptor(channel.clone(), auth.clone()),
        logins: LoginServiceClient::with_interceptor(channel.clone(), auth.clone()),
        library: MediaLibraryServiceClient::with_interceptor(channel, auth),
    })
}

async fn channel(settings: &Settings) -> Result<Channel> {
    let url = settings.endpoint.as_str();
    let bad = |why: &str| CliError::usage(format!("invalid endpoint {url:?}: {why}"));
    let endpoint = Endpoint::from_shared(url.to_owned())
        .map_err(|_| bad("expected a URL such as https://cp.example.net:7400"))?;
    let uri = endpoint.uri().clone();
    let host = uri.host().ok_or_else(|| bad("no host"))?;
    let endpoint = match uri.scheme_str() {
        Some("https") => endpoint
            .tls_config(tls_config(settings).await?)
            .map_err(|err| {
                CliError::failed(format!("configuring TLS for {url}: {}", chain(&err)))
            })?,
        Some("http") => {
            // The server only serves plaintext on loopback; anywhere else the token would
            // cross the network in the clear.
            if !is_loopback(host) {
                return Err(bad(
                    "plaintext http is only allowed to a loopback address; use https://",
                ));
            }
            endpoint
        }
        _ => return Err(bad("the scheme must be http:// or https://")),
    };
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(CALL_TIMEOUT)
        // A watched action may go quiet for minutes; pings keep the connection (and any
        // proxy on the way) from treating it as dead.
        .http2_keep_alive_interval(KEEPALIVE)
        .keep_alive_while_idle(true)
        .connect()
        .await
        .map_err(|err| CliError::failed(format!("cannot connect to {url}: {}", chain(&err))))
}

async fn tls_config(settings: &Settings) -> Result<ClientTlsConfig> {
    let mut tls = ClientTlsConfig::new();
    // tonic refuses native roots when the system has none (minimal containers); an explicit
    // --ca-cert must still work there.
    if !rustls_native_certs::load_native_certs().certs.is_empty() {
        tls = tls.with_native_roots();
    } else if settings.ca_cert.is_none() {
        return Err(CliError::failed(
            "this system has no trusted CA certificates; pass --ca-cert with the CA that signed the control plane's certificate",
        ));
    }
    if let Some(path) = &settings.ca_cert {
        let pem = tokio::fs::read(path)
            .await
            .map_err(|err| CliError::failed(format!("reading {}: {err}", path.display())))?;
        tls = tls.ca_certificate(Certificate::from_pem(pem));
    }
    Ok(tls)
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        assert!(is_loopback("127.0.0.1"));
        assert!(is_loopback("127.8.9.1"));
        assert!(is_loopback("[::1]"));
        assert!(is_loopback("localhost"));
        assert!(!is_loopback("10.0.0.1"));
        assert!(!is_loopback("cp.example.net"));
    }

    #[tokio::test]
    async fn plaintext_to_a_remote_host_is_refused() {
        let settings = Settings {
            endpoint: "http://cp.example.net:7400".into(),
            token: Some("cpt_x".into()),
            ca_cert: None,
            saved_for_other_endpoint: None,
        };
        let Err(err) = connect(&settings).await else {
            panic!("connected");
        };
        assert!(matches!(err, CliError::Usage(_)));
        assert!(err.to_string().contains("use https://"));
    }
}
