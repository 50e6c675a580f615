//! The command line: global options and the command tree.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};

use crate::parse::{
    DefaultTypeArg, LimitArg, PortRangeArg, TypeList, parse_default_type, parse_limit,
    parse_port_range, parse_type_list,
};

#[derive(Debug, Parser)]
#[command(
    name = "castctl",
    version,
    about = "Administer a castplane control plane: resellers, customers, media services, nodes",
    after_help = "Connection settings come from flags, then environment variables, then the file \
                  written by `castctl login`."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// `Debug` is written by hand below so the token never appears in debug output.
#[derive(Args)]
pub struct GlobalArgs {
    /// Control plane API, e.g. https://cp.example.net:7400 [default: as saved by `castctl
    /// login`, else http://127.0.0.1:7400]
    #[arg(long, global = true, env = "CASTPLANE_ENDPOINT", value_name = "URL")]
    pub endpoint: Option<String>,
    /// API token (prefer the environment or `castctl login`: arguments are visible to other
    /// users in the process list)
    #[arg(
        long,
        global = true,
        env = "CASTPLANE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,
    /// Extra CA certificate (PEM) to trust for an https endpoint
    #[arg(long, global = true, env = "CASTPLANE_CA_CERT", value_name = "PEM")]
    pub ca_cert: Option<PathBuf>,
    /// Output format
    #[arg(short, long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,
    /// castctl's config file [default: $XDG_CONFIG_HOME/castplane/castctl.toml]
    #[arg(long, global = true, env = "CASTCTL_CONFIG", value_name = "PATH")]
    pub config: Option<PathBuf>,
}

impl std::fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GlobalArgs")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("output", &self.output)
            .field("config", &self.config)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check --endpoint and --token, then save them for later commands
    Login,
    /// Show who the token belongs to
    Whoami,
    /// Resellers and their limits (admin)
    #[command(subcommand)]
    Reseller(ResellerCommand),
    /// Customer accounts
    #[command(subcommand)]
    Customer(CustomerCommand),
    /// API tokens
    #[command(subcommand)]
    Token(TokenCommand),
    /// Console sign-in: the email and password an account signs in to the browser console with
    #[command(subcommand, name = "console-login")]
    ConsoleLogin(ConsoleLoginCommand),
    /// Service types and what a reseller may provision
    #[command(subcommand)]
    Catalog(CatalogCommand),
    /// A reseller's used, limit and available amount of every resource
    Usage(ResellerFilter),
    /// Media services
    #[command(subcommand)]
    Service(ServiceCommand),
    /// Start/stop/restart/delete actions
    #[command(subcommand)]
    Action(ActionCommand),
    /// Streaming hosts (admin)
    #[command(subcommand)]
    Node(NodeCommand),
    /// A customer's media library: the audio tracks its AutoDJ services play
    #[command(subcommand)]
    Media(MediaCommand),
    /// A video service's uploaded video files, served over HTTP from its port
    #[command(subcommand)]
    Video(VideoCommand),
}

#[derive(Debug, Subcommand)]
pub enum MediaCommand {
    /// Upload audio files into a customer's library (checksummed; only audio ffprobe
    /// recognises is kept; counts against the customer's and the reseller's disk quota)
    Upload {
        /// Audio files (MP3, Ogg Vorbis/Opus, FLAC, WAV, AAC, M4A); each keeps its file name
        /// as its display name
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Customer id (cus_…) whose library gets the tracks
        #[arg(long, value_name = "ID")]
        customer: String,
    },
    /// List a customer's tracks
    List {
        /// Customer id (cus_…)
        #[arg(long, value_name = "ID")]
        customer: String,
    },
    /// Show one track
    Get {
        /// Track id (trk_…)
        id: String,
    },
    /// Delete a track from the library, the store and every node
    Delete {
        /// Track id (trk_…)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum VideoCommand {
    /// Upload video files to a video service (ffprobe must find a video stream; counts
    /// against the service's disk quota)
    Upload {
        /// Video files (MP4, WebM, MKV, FLV, MPEG-TS)
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The video service, by name or id
        #[arg(long, value_name = "SERVICE")]
        service: String,
    },
    /// List a video service's files and their URLs
    List {
        /// The video service, by name or id
        #[arg(long, value_name = "SERVICE")]
        service: String,
    },
    /// Delete a video file from the service, the store and its node
    Delete {
        /// Video file id (vid_…)
        id: String,
    },
}

#[derive(Debug, Args)]
pub struct ResellerFilter {
    /// Reseller id (required for the admin)
    #[arg(long, value_name = "ID")]
    pub reseller: Option<String>,
}

/// Quota flags; each takes a number or `unlimited`.
#[derive(Debug, Args, Default)]
pub struct LimitArgs {
    /// Sub-accounts the reseller may create
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub max_customers: Option<LimitArg>,
    /// Media services
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub max_services: Option<LimitArg>,
    /// Sum of the services' max listeners
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub max_listener_slots: Option<LimitArg>,
    /// Highest max bitrate of any one service (kbps)
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub max_bitrate_kbps: Option<LimitArg>,
    /// Sum of the services' disk quotas (MB)
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub max_disk_mb: Option<LimitArg>,
    /// Sum of the services' bandwidth allowances (GB per month)
    #[arg(long, value_name = "N|unlimited", value_parser = parse_limit)]
    pub max_bandwidth_gb: Option<LimitArg>,
}

#[derive(Debug, Subcommand)]
pub enum ResellerCommand {
    /// Create a reseller (and its primary account); limits not given are unlimited
    Create {
        /// The reseller's name (also its primary account's)
        #[arg(long, value_name = "NAME")]
        name: String,
        #[command(flatten)]
        limits: LimitArgs,
        /// Service types it may provision: comma-separated icecast,shoutcast,video, or none
        #[arg(long, value_name = "TYPES", value_parser = parse_type_list)]
        allow_types: Option<TypeList>,
        /// Type the creation wizard preselects
        #[arg(long, value_name = "TYPE", value_parser = parse_default_type)]
        default_type: Option<DefaultTypeArg>,
    },
    /// List resellers
    List,
    /// Show one reseller
    Get {
        /// Reseller id (rsl_…)
        id: String,
    },
    /// Change a reseller; only the flags given are changed
    Update {
        /// Reseller id (rsl_…)
        id: String,
        /// The reseller's name (also its primary account's)
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[command(flatten)]
        limits: LimitArgs,
        /// Service types it may provision: comma-separated icecast,shoutcast,video, or none
        #[arg(long, value_name = "TYPES", value_parser = parse_type_list)]
        allow_types: Option<TypeList>,
        /// Type the creation wizard preselects, or `none`
        #[arg(long, value_name = "TYPE|none", value_parser = parse_default_type)]
        default_type: Option<DefaultTypeArg>,
    },
    /// Delete a reseller with its primary account and every sub-account (admin only)
    Delete {
        /// Reseller id (rsl_…)
        id: String,
        #[command(flatten)]
        options: AccountDeleteArgs,
    },
}

/// How far an account deletion may go.
#[derive(Debug, Args)]
pub struct AccountDeleteArgs {
    /// Queue the deletes of the account's media services instead of refusing while it has
    /// any; the account goes once they have all succeeded
    #[arg(long)]
    pub force: bool,
    /// Required with --force when a video service is among them: its files are destroyed
    #[arg(long)]
    pub confirm_permanent_deletion: bool,
    /// Show which accounts and services would go; change nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Create a sub-account
    Create {
        #[arg(long, value_name = "NAME")]
        name: String,
        /// Contact address
        #[arg(long)]
        email: Option<String>,
        /// Reseller id (required for the admin)
        #[arg(long, value_name = "ID")]
        reseller: Option<String>,
    },
    /// List customers
    List(ResellerFilter),
    /// Show one customer
    Get {
        /// Customer id (cus_…)
        id: String,
    },
    /// Change a customer; only the flags given are changed
    Update {
        /// Customer id (cus_…)
        id: String,
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        /// Contact address
        #[arg(long)]
        email: Option<String>,
    },
    /// The creation wizard's customer list: a-z, primary account marked
    Choices(ResellerFilter),
    /// Delete a sub-account with its media library, login and API tokens
    Delete {
        /// Customer id (cus_…)
        id: String,
        #[command(flatten)]
        options: AccountDeleteArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Issue an API token; the secret is printed once
    #[command(group(ArgGroup::new("principal").required(true).args(["admin", "reseller", "customer"])))]
    Create {
        /// A token for the admin
        #[arg(long)]
        admin: bool,
        /// A token for this reseller
        #[arg(long, value_name = "ID")]
        reseller: Option<String>,
        /// A token for this customer
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
        /// What the token is for, e.g. "billing sync"
        #[arg(long, default_value = "")]
        description: String,
    },
    /// List an account's API tokens (your own without a flag); secrets are never shown
    #[command(group(ArgGroup::new("principal").args(["admin", "reseller", "customer"])))]
    List {
        /// The admin's tokens
        #[arg(long)]
        admin: bool,
        /// This reseller's tokens
        #[arg(long, value_name = "ID")]
        reseller: Option<String>,
        /// This customer's tokens
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
    },
    /// Revoke a token: every control-plane replica refuses it from then on
    Revoke {
        /// Token id (tok_…)
        id: String,
    },
}

/// Whose console login: exactly one of --admin, --reseller ID, --customer ID.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("account").required(true).args(["admin", "reseller", "customer"])))]
pub struct LoginAccount {
    /// The admin's own login
    #[arg(long)]
    pub admin: bool,
    /// This reseller's login (it signs in as the reseller, primary account included)
    #[arg(long, value_name = "ID")]
    pub reseller: Option<String>,
    /// This customer's login
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConsoleLoginCommand {
    /// Set the email and password (read from standard input, never from the command line);
    /// ends the login's sessions and lifts a lockout
    Set {
        #[command(flatten)]
        account: LoginAccount,
        #[arg(long)]
        email: String,
        /// Read the password from the first line of standard input
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Show the login's email and whether it is locked
    Get {
        #[command(flatten)]
        account: LoginAccount,
    },
    /// Remove the login and end its sessions (API tokens are not affected)
    Delete {
        #[command(flatten)]
        account: LoginAccount,
    },
}

#[derive(Debug, Subcommand)]
pub enum CatalogCommand {
    /// Every service type the control plane knows
    Types,
    /// The types a reseller may provision, and its saved default
    Options(ResellerFilter),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ServiceTypeArg {
    Icecast,
    Shoutcast,
    Video,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ScopeArg {
    /// A reseller's own services (its primary account)
    My,
    /// A reseller's customers' services (its sub-accounts)
    Customers,
    /// Everything visible
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ActionStateArg {
    Queued,
    Dispatched,
    Running,
    Succeeded,
    Failed,
}

/// `service create`. Every value is optional here: what is missing is asked for by the wizard
/// on a terminal, and is an error otherwise.
#[derive(Debug, Args, Default)]
pub struct CreateServiceArgs {
    /// Customer id that will own the service
    #[arg(long, value_name = "ID")]
    pub customer: Option<String>,
    /// Reseller whose customers the wizard offers (admin only; others use their own)
    #[arg(long, value_name = "ID")]
    pub reseller: Option<String>,
    /// Service type
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub service_type: Option<ServiceTypeArg>,
    /// Lowercase letters, digits and hyphens; unique per reseller
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Most listeners at once
    #[arg(long, value_name = "N")]
    pub max_listeners: Option<u32>,
    /// Highest bitrate a source may send (kbps)
    #[arg(long, value_name = "KBPS")]
    pub max_bitrate_kbps: Option<u32>,
    /// Disk quota (MB)
    #[arg(long, value_name = "MB")]
    pub disk_mb: Option<u64>,
    /// Bandwidth allowance (GB per month)
    #[arg(long, value_name = "GB")]
    pub bandwidth_gb: Option<u64>,
    /// Enable AutoDJ (audio only)
    #[arg(long)]
    pub autodj: bool,
    /// Name shown to listeners [default: the name]
    #[arg(long, value_name = "TEXT")]
    pub display_name: Option<String>,
    /// Place it on this node (name or id) instead of letting the control plane choose
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// Save the type as the reseller's default for the next creation
    #[arg(long)]
    pub remember_type: bool,
}

#[derive(Debug, Args)]
pub struct ServiceRef {
    /// Service name or id (svc_…)
    #[arg(value_name = "SERVICE")]
    pub service: String,
}

#[derive(Debug, Args)]
pub struct ActionArgs {
    #[command(flatten)]
    pub target: ServiceRef,
    /// Wait until the action has finished; exit non-zero if it failed
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Create a media service (a wizard on a terminal when flags are missing)
    Create(CreateServiceArgs),
    /// List media services
    List {
        /// Which of a reseller's services: its own, its customers', or all
        #[arg(long, value_enum, default_value_t = ScopeArg::All)]
        scope: ScopeArg,
        /// Only this customer's services
        #[arg(long, value_name = "ID")]
        customer: Option<String>,
        /// Only this reseller's services
        #[arg(long, value_name = "ID")]
        reseller: Option<String>,
        /// Node name or id
        #[arg(long, value_name = "NODE")]
        node: Option<String>,
        /// Include deleted services (tombstones)
        #[arg(long)]
        show_deleted: bool,
    },
    /// Show a service: configuration, ports, desired and observed state (deleted ones too,
    /// by id)
    Get(ServiceRef),
    /// Change a service; only the flags given are changed
    Update {
        #[command(flatten)]
        target: ServiceRef,
        /// Name shown to listeners
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// Most listeners at once
        #[arg(long, value_name = "N")]
        max_listeners: Option<u32>,
        /// Highest bitrate a source may send (kbps)
        #[arg(long, value_name = "KBPS")]
        max_bitrate_kbps: Option<u32>,
        /// Disk quota (MB)
        #[arg(long, value_name = "MB")]
        disk_mb: Option<u64>,
        /// Bandwidth allowance (GB per month)
        #[arg(long, value_name = "GB")]
        bandwidth_gb: Option<u64>,
        /// Turn AutoDJ on (`--autodj` or `--autodj true`) or off (`--autodj false`)
        #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
        autodj: Option<bool>,
    },
    /// How to feed the service and where to listen (shows the source password)
    Connection(ServiceRef),
    /// Move a service to another customer
    ChangeOwner {
        #[command(flatten)]
        target: ServiceRef,
        /// The new owner's customer id
        #[arg(long, visible_alias = "customer", value_name = "CUSTOMER_ID")]
        to: String,
    },
    /// Who owned the service before, and who moved it
    OwnerHistory(ServiceRef),
    /// Queue a start
    Start(ActionArgs),
    /// Queue a stop
    Stop(ActionArgs),
    /// Queue a restart
    Restart(ActionArgs),
    /// Queue a deletion (video services destroy their files: confirm explicitly)
    Delete {
        #[command(flatten)]
        action: ActionArgs,
        /// Required for video services: their uploaded files and HLS output are destroyed
        #[arg(long)]
        confirm_permanent_deletion: bool,
        /// Show what would be kept and destroyed; change nothing
        #[arg(long, conflicts_with = "wait")]
        dry_run: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ActionCommand {
    /// Show one action with its transitions
    Get {
        /// Action id (act_…)
        id: String,
    },
    /// List actions, newest last
    List {
        /// Only this service's actions (name or id)
        #[arg(long, value_name = "SERVICE")]
        service: Option<String>,
        /// Only actions in this state
        #[arg(long, value_enum)]
        state: Option<ActionStateArg>,
    },
    /// Follow an action until it finishes; exit non-zero if it failed
    Watch {
        /// Action id (act_…)
        id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Register a streaming host and print its agent's one-time join token
    Add {
        /// Unique node name
        name: String,
        /// Hostname listeners and broadcasters use
        #[arg(long, value_name = "HOST")]
        public_host: String,
        /// IP address its streaming servers listen on (0.0.0.0: every interface) [default:
        /// what the public host resolves to on the node]
        #[arg(long, value_name = "IP")]
        bind_address: Option<String>,
        /// Ports services on this node may take, FIRST-LAST
        #[arg(long, value_name = "FIRST-LAST", value_parser = parse_port_range)]
        ports: PortRangeArg,
        /// Max services on the node (0: only the port range limits it)
        #[arg(long, value_name = "N", default_value_t = 0)]
        capacity: u32,
        /// How long the join token stays valid [default: the server's, one hour]
        #[arg(long, value_name = "SECONDS")]
        token_ttl: Option<u32>,
    },
    /// List nodes
    List,
    /// Show one node
    Get {
        /// Node name or id (node_…)
        node: String,
    },
    /// Issue a fresh join token (the previous one stops working)
    Token {
        /// Node name or id (node_…)
        node: String,
        /// How long the token stays valid [default: the server's, one hour]
        #[arg(long, value_name = "SECONDS")]
        ttl: Option<u32>,
    },
    /// Remove a node with no services on it; its agent's certificate stops working
    Delete {
        /// Node name or id (node_…)
        node: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn update_autodj_takes_an_optional_bool() {
        let cli = Cli::try_parse_from(["castctl", "service", "update", "radio", "--autodj"])
            .expect("parses");
        let Command::Service(ServiceCommand::Update { autodj, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(autodj, Some(true));
        let cli =
            Cli::try_parse_from(["castctl", "service", "update", "radio", "--autodj", "false"])
                .expect("parses");
        let Command::Service(ServiceCommand::Update { autodj, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(autodj, Some(false));
    }

    #[test]
    fn token_create_needs_exactly_one_principal() {
        assert!(Cli::try_parse_from(["castctl", "token", "create"]).is_err());
        assert!(
            Cli::try_parse_from(["castctl", "token", "create", "--admin", "--reseller", "r"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["castctl", "token", "create", "--customer", "c"]).is_ok());
    }

    #[test]
    fn limits_parse_through_clap() {
        let cli = Cli::try_parse_from([
            "castctl",
            "reseller",
            "update",
            "rsl_1",
            "--max-services",
            "unlimited",
            "--max-disk-mb",
            "500",
        ])
        .expect("parses");
        let Command::Reseller(ResellerCommand::Update { limits, .. }) = cli.command else {
            panic!("wrong command");
        };
        assert_eq!(limits.max_services, Some(LimitArg(None)));
        assert_eq!(limits.max_disk_mb, Some(LimitArg(Some(500))));
        assert_eq!(limits.max_customers, None);
    }
}
