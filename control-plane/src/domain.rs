//! Domain types shared by the service layer, persistence and the API conversions.

use std::fmt;
use std::str::FromStr;

use castplane_proto::v1 as pb;

/// Who is calling, as established by the auth layer from the bearer token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    Reseller { id: String },
    Customer { id: String, reseller_id: String },
}

impl Principal {
    /// How the principal is recorded on actions and ownership changes.
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Admin => "admin".to_owned(),
            Principal::Reseller { id } => format!("reseller:{id}"),
            Principal::Customer { id, .. } => format!("customer:{id}"),
        }
    }

    /// How tokens and logins store whom they belong to: (kind, id), the id empty for the admin.
    pub fn stored_key(&self) -> (&'static str, &str) {
        match self {
            Principal::Admin => ("admin", ""),
            Principal::Reseller { id } => ("reseller", id),
            Principal::Customer { id, .. } => ("customer", id),
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

/// An enum stored as text: its database value, `Display`/`FromStr`, and a sea-orm column type,
/// so a row holding any other text fails to load instead of turning into a plausible default.
macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, sea_orm::EnumIter, sea_orm::DeriveActiveEnum)]
        #[sea_orm(rs_type = "String", db_type = "Text")]
        pub enum $name { $(#[sea_orm(string_value = $text)] $variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    other => Err(format!("unknown {} {other:?}", stringify!($name))),
                }
            }
        }
    };
}

string_enum!(
    /// Which streaming software a media service runs on.
    #[derive(PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
    #[serde(rename_all = "lowercase")]
    ServiceType { Icecast => "icecast", Shoutcast => "shoutcast", Video => "video" }
);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceKind {
    Audio,
    Video,
}

impl ServiceType {
    pub const ALL: [ServiceType; 3] = [
        ServiceType::Icecast,
        ServiceType::Shoutcast,
        ServiceType::Video,
    ];

    pub fn kind(self) -> ServiceKind {
        match self {
            ServiceType::Icecast | ServiceType::Shoutcast => ServiceKind::Audio,
            ServiceType::Video => ServiceKind::Video,
        }
    }

    /// The ports each service takes from its node's range, by purpose.
    pub fn port_purposes(self) -> &'static [&'static str] {
        match self {
            ServiceType::Icecast => &["http"],
            // DNAS 2 listens on its port; legacy v1 sources use port + 1.
            ServiceType::Shoutcast => &["http", "legacy-source"],
            ServiceType::Video => &["rtmp", "http"],
        }
    }

    pub fn info(self) -> pb::ServiceTypeInfo {
        let (display_name, description, requires): (&str, &str, &[&str]) = match self {
            ServiceType::Icecast => (
                "Icecast 2",
                "Audio streaming with Icecast 2; optional AutoDJ.",
                &["icecast2"],
            ),
            ServiceType::Shoutcast => (
                "SHOUTcast DNAS 2",
                "Audio streaming with SHOUTcast DNAS 2 (sc_serv); optional AutoDJ.",
                &["sc_serv"],
            ),
            ServiceType::Video => (
                "Live and on-demand video",
                "Live RTMP ingest with HLS output, and uploaded video files (nginx with the RTMP module).",
                &["nginx", "ngx_rtmp_module"],
            ),
        };
        pb::ServiceTypeInfo {
            r#type: pb::ServiceType::from(self) as i32,
            kind: match self.kind() {
                ServiceKind::Audio => pb::ServiceKind::Audio,
                ServiceKind::Video => pb::ServiceKind::Video,
            } as i32,
            display_name: display_name.to_owned(),
            description: description.to_owned(),
            requires: requires.iter().map(|r| (*r).to_owned()).collect(),
            supports_autodj: self.kind() == ServiceKind::Audio,
            ports_per_service: self.port_purposes().len() as u32,
        }
    }
}

impl From<ServiceType> for pb::ServiceType {
    fn from(value: ServiceType) -> Self {
        match value {
            ServiceType::Icecast => pb::ServiceType::Icecast,
            ServiceType::Shoutcast => pb::ServiceType::Shoutcast,
            ServiceType::Video => pb::ServiceType::Video,
        }
    }
}

impl TryFrom<pb::ServiceType> for ServiceType {
    type Error = ();

    fn try_from(value: pb::ServiceType) -> Result<Self, Self::Error> {
        match value {
            pb::ServiceType::Icecast => Ok(ServiceType::Icecast),
            pb::ServiceType::Shoutcast => Ok(ServiceType::Shoutcast),
            pb::ServiceType::Video => Ok(ServiceType::Video),
            pb::ServiceType::Unspecified => Err(()),
        }
    }
}

/// Parses a wire enum value that must name a concrete service type.
pub fn service_type_from_wire(value: i32) -> Option<ServiceType> {
    pb::ServiceType::try_from(value)
        .ok()
        .and_then(|t| ServiceType::try_from(t).ok())
}

string_enum!(
    /// What a service should be doing, as the last completed action left it.
    DesiredState { Running => "running", Stopped => "stopped" }
);

string_enum!(
    ActionKind { Start => "start", Stop => "stop", Restart => "restart", Delete => "delete" }
);

string_enum!(
    ActionState {
        Queued => "queued",
        Dispatched => "dispatched",
        Running => "running",
        Succeeded => "succeeded",
        Failed => "failed",
    }
);

string_enum!(
    ObservedState {
        Unknown => "unknown",
        Stopped => "stopped",
        Starting => "starting",
        Running => "running",
        BackingOff => "backing_off",
        Failed => "failed",
    }
);

impl ActionState {
    pub fn is_terminal(self) -> bool {
        matches!(self, ActionState::Succeeded | ActionState::Failed)
    }
}

impl From<ActionKind> for pb::ActionKind {
    fn from(value: ActionKind) -> Self {
        match value {
            ActionKind::Start => pb::ActionKind::Start,
            ActionKind::Stop => pb::ActionKind::Stop,
            ActionKind::Restart => pb::ActionKind::Restart,
            ActionKind::Delete => pb::ActionKind::Delete,
        }
    }
}

impl From<ActionState> for pb::ActionState {
    fn from(value: ActionState) -> Self {
        match value {
            ActionState::Queued => pb::ActionState::Queued,
            ActionState::Dispatched => pb::ActionState::Dispatched,
            ActionState::Running => pb::ActionState::Running,
            ActionState::Succeeded => pb::ActionState::Succeeded,
            ActionState::Failed => pb::ActionState::Failed,
        }
    }
}

impl TryFrom<pb::ActionState> for ActionState {
    type Error = ();

    fn try_from(value: pb::ActionState) -> Result<Self, Self::Error> {
        match value {
            pb::ActionState::Queued => Ok(ActionState::Queued),
            pb::ActionState::Dispatched => Ok(ActionState::Dispatched),
            pb::ActionState::Running => Ok(ActionState::Running),
            pb::ActionState::Succeeded => Ok(ActionState::Succeeded),
            pb::ActionState::Failed => Ok(ActionState::Failed),
            pb::ActionState::Unspecified => Err(()),
        }
    }
}

impl From<DesiredState> for pb::DesiredState {
    fn from(value: DesiredState) -> Self {
        match value {
            DesiredState::Running => pb::DesiredState::Running,
            DesiredState::Stopped => pb::DesiredState::Stopped,
        }
    }
}

impl From<ObservedState> for pb::ObservedState {
    fn from(value: ObservedState) -> Self {
        match value {
            ObservedState::Unknown => pb::ObservedState::Unknown,
            ObservedState::Stopped => pb::ObservedState::Stopped,
            ObservedState::Starting => pb::ObservedState::Starting,
            ObservedState::Running => pb::ObservedState::Running,
            ObservedState::BackingOff => pb::ObservedState::BackingOff,
            ObservedState::Failed => pb::ObservedState::Failed,
        }
    }
}

impl From<pb::ObservedState> for ObservedState {
    fn from(value: pb::ObservedState) -> Self {
        match value {
            pb::ObservedState::Unspecified | pb::ObservedState::Unknown => ObservedState::Unknown,
            pb::ObservedState::Stopped => ObservedState::Stopped,
            pb::ObservedState::Starting => ObservedState::Starting,
            pb::ObservedState::Running => ObservedState::Running,
            pb::ObservedState::BackingOff => ObservedState::BackingOff,
            pb::ObservedState::Failed => ObservedState::Failed,
        }
    }
}

/// The quota-limited resources of a reseller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resource {
    Customers,
    Services,
    ListenerSlots,
    MaxBitrateKbps,
    DiskMb,
    BandwidthGbPerMonth,
}

impl Resource {
    pub const ALL: [Resource; 6] = [
        Resource::Customers,
        Resource::Services,
        Resource::ListenerSlots,
        Resource::MaxBitrateKbps,
        Resource::DiskMb,
        Resource::BandwidthGbPerMonth,
    ];

    /// The name used in error messages and `QuotaFailure` subjects.
    pub fn name(self) -> &'static str {
        match self {
            Resource::Customers => "customers",
            Resource::Services => "services",
            Resource::ListenerSlots => "listener_slots",
            Resource::MaxBitrateKbps => "max_bitrate_kbps",
            Resource::DiskMb => "disk_mb",
            Resource::BandwidthGbPerMonth => "bandwidth_gb_per_month",
        }
    }
}

impl From<Resource> for pb::Resource {
    fn from(value: Resource) -> Self {
        match value {
            Resource::Customers => pb::Resource::Customers,
            Resource::Services => pb::Resource::Services,
            Resource::ListenerSlots => pb::Resource::ListenerSlots,
            Resource::MaxBitrateKbps => pb::Resource::MaxBitrateKbps,
            Resource::DiskMb => pb::Resource::DiskMb,
            Resource::BandwidthGbPerMonth => pb::Resource::BandwidthGbPerMonth,
        }
    }
}

/// What one service may ask for at most: bounds that keep a typo from reserving a
/// continent's worth of capacity.
pub const MAX_LISTENERS: u32 = 1_000_000;
pub const MAX_BITRATE_KBPS: u32 = 100_000;
/// 1 PB, and 1 EB a month: far beyond any real service, far below where sums could overflow.
pub const MAX_DISK_MB: u64 = 1_000_000_000;
pub const MAX_BANDWIDTH_GB: u64 = 1_000_000_000;
/// The most customers or services a reseller may be allowed.
pub const MAX_ACCOUNTS: u64 = 1_000_000;

impl Resource {
    /// The highest limit a reseller may be given: what `MAX_ACCOUNTS` services at their largest
    /// could use. Beyond it only "unlimited" is left, so every stored limit and every sum of
    /// usage stays far inside a signed 64-bit column.
    pub fn max_limit(self) -> u64 {
        match self {
            Resource::Customers | Resource::Services => MAX_ACCOUNTS,
            Resource::ListenerSlots => MAX_ACCOUNTS * MAX_LISTENERS as u64,
            Resource::MaxBitrateKbps => MAX_BITRATE_KBPS as u64,
            Resource::DiskMb => MAX_ACCOUNTS * MAX_DISK_MB,
            Resource::BandwidthGbPerMonth => MAX_ACCOUNTS * MAX_BANDWIDTH_GB,
        }
    }
}

/// A reseller's limits; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Limits {
    pub customers: Option<u64>,
    pub services: Option<u64>,
    pub listener_slots: Option<u64>,
    pub max_bitrate_kbps: Option<u64>,
    pub disk_mb: Option<u64>,
    pub bandwidth_gb_per_month: Option<u64>,
}

impl Limits {
    pub fn get(&self, resource: Resource) -> Option<u64> {
        match resource {
            Resource::Customers => self.customers,
            Resource::Services => self.services,
            Resource::ListenerSlots => self.listener_slots,
            Resource::MaxBitrateKbps => self.max_bitrate_kbps,
            Resource::DiskMb => self.disk_mb,
            Resource::BandwidthGbPerMonth => self.bandwidth_gb_per_month,
        }
    }

    pub fn set(&mut self, resource: Resource, value: Option<u64>) {
        let slot = match resource {
            Resource::Customers => &mut self.customers,
            Resource::Services => &mut self.services,
            Resource::ListenerSlots => &mut self.listener_slots,
            Resource::MaxBitrateKbps => &mut self.max_bitrate_kbps,
            Resource::DiskMb => &mut self.disk_mb,
            Resource::BandwidthGbPerMonth => &mut self.bandwidth_gb_per_month,
        };
        *slot = value;
    }
}

/// What a reseller uses of each resource, summed over its live services.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub customers: u64,
    pub services: u64,
    pub listener_slots: u64,
    /// The highest bitrate of any one service; the limit is per service.
    pub max_bitrate_kbps: u64,
    pub disk_mb: u64,
    pub bandwidth_gb_per_month: u64,
}

impl Usage {
    pub fn get(&self, resource: Resource) -> u64 {
        match resource {
            Resource::Customers => self.customers,
            Resource::Services => self.services,
            Resource::ListenerSlots => self.listener_slots,
            Resource::MaxBitrateKbps => self.max_bitrate_kbps,
            Resource::DiskMb => self.disk_mb,
            Resource::BandwidthGbPerMonth => self.bandwidth_gb_per_month,
        }
    }

    /// What is still available of `resource` under `limits`; `None` when unlimited.
    pub fn available(&self, limits: &Limits, resource: Resource) -> Option<u64> {
        let limit = limits.get(resource)?;
        Some(match resource {
            // A cap on each service, not a pool.
            Resource::MaxBitrateKbps => limit,
            _ => limit.saturating_sub(self.get(resource)),
        })
    }
}

/// What one service (or a request) takes from its reseller's quotas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Demand {
    pub services: u64,
    pub listener_slots: u64,
    pub max_bitrate_kbps: u64,
    pub disk_mb: u64,
    pub bandwidth_gb_per_month: u64,
}

/// A set of service types, stored as their names in order, comma-separated ("icecast,video";
/// empty for none). A stored name that is not a type fails the row's load.
#[derive(Clone, Debug, Default, PartialEq, Eq, sea_orm::DeriveValueType)]
#[sea_orm(
    value_type = "String",
    from_str = "ServiceTypes::decode",
    to_str = "ServiceTypes::encode"
)]
pub struct ServiceTypes(std::collections::BTreeSet<ServiceType>);

impl ServiceTypes {
    pub fn contains(&self, service_type: ServiceType) -> bool {
        self.0.contains(&service_type)
    }

    pub fn iter(&self) -> impl Iterator<Item = ServiceType> + '_ {
        self.0.iter().copied()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn encode(&self) -> String {
        self.iter()
            .map(ServiceType::as_str)
            .collect::<Vec<_>>()
            .join(",")
    }

    fn decode(text: &str) -> Result<Self, StoredValueError> {
        if text.is_empty() {
            return Ok(ServiceTypes::default());
        }
        text.split(',')
            .map(|name| name.parse().map_err(StoredValueError))
            .collect::<Result<_, _>>()
            .map(ServiceTypes)
    }
}

impl FromIterator<ServiceType> for ServiceTypes {
    fn from_iter<I: IntoIterator<Item = ServiceType>>(iter: I) -> Self {
        ServiceTypes(iter.into_iter().collect())
    }
}

/// Why a stored value does not load (the row was written by something else).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StoredValueError(String);

/// Typed JSON columns: stored with serde, and a text that does not decode fails the row's load.
macro_rules! json_column {
    ($(#[$meta:meta])* pub struct $name:ident $body:tt $($semi:tt)?) => {
        $(#[$meta])*
        #[derive(
            Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize,
            sea_orm::DeriveValueType,
        )]
        #[sea_orm(value_type = "String", from_str = "Self::from_json", to_str = "JsonColumn::to_json")]
        pub struct $name $body $($semi)?

        impl $name {
            fn from_json(text: &str) -> Result<Self, StoredValueError> {
                serde_json::from_str(text).map_err(|e| StoredValueError(e.to_string()))
            }
        }

        impl JsonColumn for $name {}
    };
}

/// How a typed JSON column is stored.
trait JsonColumn: serde::Serialize {
    fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

json_column! {
    /// A service's counters as its node last reported them (`observed_services.stats`).
    pub struct ServiceStats {
        pub listeners: u32,
        pub sources: u32,
        pub mounts: Vec<String>,
        pub bytes_sent: u64,
        pub bytes_read: u64,
    }
}

/// One plugin's report of what it can run on a node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Capability {
    pub service_type: ServiceType,
    pub available: bool,
    pub version: String,
    pub detail: String,
    pub autodj_available: bool,
}

json_column! {
    /// What a node's agent last reported it can run (`nodes.capabilities`).
    pub struct NodeCapabilities(pub Vec<Capability>);
}

impl NodeCapabilities {
    pub fn supports(&self, service_type: ServiceType, autodj: bool) -> bool {
        self.0.iter().any(|c| {
            c.service_type == service_type && c.available && (!autodj || c.autodj_available)
        })
    }
}
