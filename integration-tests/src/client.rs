//! An authenticated gRPC client of the public API over TLS, with shorthands for the setup
//! steps most tests share.

use castplane_proto::v1 as pb;
use castplane_proto::v1::account_service_client::AccountServiceClient;
use castplane_proto::v1::action_service_client::ActionServiceClient;
use castplane_proto::v1::catalog_service_client::CatalogServiceClient;
use castplane_proto::v1::login_service_client::LoginServiceClient;
use castplane_proto::v1::media_service_service_client::MediaServiceServiceClient;
use castplane_proto::v1::node_service_client::NodeServiceClient;
use castplane_proto::v1::session_service_client::SessionServiceClient;
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

#[derive(Clone)]
pub struct Bearer(MetadataValue<tonic::metadata::Ascii>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        request
            .metadata_mut()
            .insert("authorization", self.0.clone());
        Ok(request)
    }
}

type Authed = InterceptedService<Channel, Bearer>;

#[derive(Clone)]
pub struct Client {
    channel: Channel,
    bearer: Bearer,
}

impl Client {
    pub async fn connect(url: &str, ca_pem: &str, token: &str) -> Self {
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca_pem))
            .domain_name("localhost");
        let channel = Channel::from_shared(url.to_owned())
            .expect("url")
            .tls_config(tls)
            .expect("tls config")
            .connect()
            .await
            .expect("connect to the public API");
        let bearer = Bearer(format!("Bearer {token}").parse().expect("token is ASCII"));
        Client { channel, bearer }
    }

    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    pub fn accounts(&self) -> AccountServiceClient<Authed> {
        AccountServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn catalog(&self) -> CatalogServiceClient<Authed> {
        CatalogServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn media(&self) -> MediaServiceServiceClient<Authed> {
        MediaServiceServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn actions(&self) -> ActionServiceClient<Authed> {
        ActionServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn nodes(&self) -> NodeServiceClient<Authed> {
        NodeServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn sessions(&self) -> SessionServiceClient<Authed> {
        SessionServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn logins(&self) -> LoginServiceClient<Authed> {
        LoginServiceClient::with_interceptor(self.channel.clone(), self.bearer.clone())
    }

    pub fn library(
        &self,
    ) -> castplane_proto::v1::media_library_service_client::MediaLibraryServiceClient<Authed> {
        castplane_proto::v1::media_library_service_client::MediaLibraryServiceClient::with_interceptor(
            self.channel.clone(),
            self.bearer.clone(),
        )
    }

    /// A reseller with the given limits (None = unlimited) and allowed types.
    pub async fn create_reseller(
        &self,
        name: &str,
        limits: pb::ResellerLimits,
        types: &[pb::ServiceType],
    ) -> pb::Reseller {
        self.accounts()
            .create_reseller(pb::CreateResellerRequest {
                reseller: Some(pb::Reseller {
                    display_name: name.to_owned(),
                    limits: Some(limits),
                    allowed_service_types: types.iter().map(|t| *t as i32).collect(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create reseller")
            .into_inner()
    }

    pub async fn create_customer(&self, reseller_id: &str, name: &str) -> pb::Customer {
        self.accounts()
            .create_customer(pb::CreateCustomerRequest {
                customer: Some(pb::Customer {
                    reseller_id: reseller_id.to_owned(),
                    display_name: name.to_owned(),
                    ..Default::default()
                }),
            })
            .await
            .expect("create customer")
            .into_inner()
    }

    /// A token for a reseller or customer, issued by this client.
    pub async fn token_for(&self, kind: pb::PrincipalKind, id: &str) -> String {
        self.accounts()
            .create_api_token(pb::CreateApiTokenRequest {
                principal_kind: kind as i32,
                principal_id: id.to_owned(),
                description: "test".to_owned(),
            })
            .await
            .expect("create token")
            .into_inner()
            .secret
    }

    pub async fn create_node(&self, name: &str, first: u32, last: u32) -> (pb::Node, String) {
        let response = self
            .nodes()
            .create_node(pb::CreateNodeRequest {
                node: Some(pb::Node {
                    name: name.to_owned(),
                    public_host: "127.0.0.1".to_owned(),
                    port_range: Some(pb::PortRange { first, last }),
                    ..Default::default()
                }),
                join_token_ttl_seconds: 0,
            })
            .await
            .expect("create node")
            .into_inner();
        (
            response.node.expect("node"),
            response.join_token.expect("join token").token,
        )
    }

    pub async fn customer(&self, id: &str) -> pb::Customer {
        self.accounts()
            .get_customer(pb::GetCustomerRequest { id: id.to_owned() })
            .await
            .expect("get customer")
            .into_inner()
    }

    pub async fn node(&self, id: &str) -> pb::Node {
        self.nodes()
            .get_node(pb::GetNodeRequest { id: id.to_owned() })
            .await
            .expect("get node")
            .into_inner()
    }

    /// Waits until the node is online and reports that it can run `service_type`.
    pub async fn wait_node_ready(&self, id: &str, service_type: pb::ServiceType) -> pb::Node {
        crate::wait_for(
            &format!("node {id} to come online able to run {service_type:?}"),
            std::time::Duration::from_secs(60),
            || async move {
                let node = self.node(id).await;
                let able = node
                    .capabilities
                    .iter()
                    .any(|c| c.r#type == service_type as i32 && c.available);
                (node.status == pb::NodeStatus::Online as i32 && able).then_some(node)
            },
        )
        .await
    }

    pub async fn action(&self, id: &str) -> pb::Action {
        self.actions()
            .get_action(pb::GetActionRequest { id: id.to_owned() })
            .await
            .expect("get action")
            .into_inner()
    }

    /// Waits until the action has succeeded or failed, and returns it.
    pub async fn finished_action(&self, id: &str, timeout: std::time::Duration) -> pb::Action {
        crate::wait_for(&format!("action {id} to finish"), timeout, || async move {
            let action = self.action(id).await;
            let done = action.state == pb::ActionState::Succeeded as i32
                || action.state == pb::ActionState::Failed as i32;
            done.then_some(action)
        })
        .await
    }

    /// Queues a start of the service; the action as queued.
    pub async fn start_service(&self, id: &str) -> pb::Action {
        self.media()
            .start_media_service(pb::StartMediaServiceRequest { id: id.to_owned() })
            .await
            .expect("start")
            .into_inner()
    }

    /// Waits until the node reports that it can run `service_type`, and returns it.
    pub async fn node_that_runs(
        &self,
        node_id: &str,
        service_type: pb::ServiceType,
        timeout: std::time::Duration,
    ) -> pb::Node {
        crate::wait_for(
            &format!("node {node_id} to report {service_type:?}"),
            timeout,
            || async move {
                let node = self.node(node_id).await;
                node.capabilities
                    .iter()
                    .any(|c| c.r#type == service_type as i32 && c.available)
                    .then_some(node)
            },
        )
        .await
    }

    pub async fn service(&self, id: &str) -> pb::MediaService {
        self.media()
            .get_media_service(pb::GetMediaServiceRequest { id: id.to_owned() })
            .await
            .expect("get service")
            .into_inner()
    }
}

/// Limits with every resource set (None = unlimited).
pub fn limits(
    customers: Option<u64>,
    services: Option<u64>,
    listener_slots: Option<u64>,
    max_bitrate_kbps: Option<u64>,
    disk_mb: Option<u64>,
    bandwidth_gb: Option<u64>,
) -> pb::ResellerLimits {
    let l = |max| Some(pb::Limit { max });
    pb::ResellerLimits {
        customers: l(customers),
        services: l(services),
        listener_slots: l(listener_slots),
        max_bitrate_kbps: l(max_bitrate_kbps),
        disk_mb: l(disk_mb),
        bandwidth_gb_per_month: l(bandwidth_gb),
    }
}

/// A create request with sensible defaults for the fields a test does not care about.
pub fn icecast_request(
    customer_id: &str,
    name: &str,
    max_listeners: u32,
) -> pb::CreateMediaServiceRequest {
    pb::CreateMediaServiceRequest {
        media_service: Some(pb::MediaService {
            customer_id: customer_id.to_owned(),
            r#type: pb::ServiceType::Icecast as i32,
            name: name.to_owned(),
            max_listeners,
            max_bitrate_kbps: 128,
            disk_quota_mb: 100,
            bandwidth_gb_per_month: 10,
            ..Default::default()
        }),
        remember_type_as_default: false,
    }
}

/// The services the server at `channel` lists through reflection, sorted.
pub async fn reflected_services(channel: tonic::transport::Channel) -> Vec<String> {
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut replies = ServerReflectionClient::new(channel)
        .server_reflection_info(futures::stream::iter(vec![request]))
        .await
        .expect("reflection")
        .into_inner();
    let reply = replies.message().await.expect("reply").expect("a reply");
    let Some(MessageResponse::ListServicesResponse(list)) = reply.message_response else {
        panic!("unexpected reply {reply:?}")
    };
    let mut names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    names.sort();
    names
}
