//! Every gRPC method the control plane serves, read once from the compiled descriptor set.
//!
//! Health lists the `castplane.v1` services from here, the stream limits know which calls are
//! streams, and metrics label a call by method only if it is in this table — a path a client
//! made up becomes `unknown`, so labels stay bounded whatever arrives.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use prost::Message;

/// The public API's package: health reports each of its services.
pub const PUBLIC_PACKAGE: &str = "castplane.v1";

/// Services outside the castplane descriptor set that the servers also mount.
const EXTRA_METHODS: &[(&str, &str, bool)] = &[
    ("grpc.health.v1.Health", "Check", false),
    ("grpc.health.v1.Health", "Watch", true),
    (
        "grpc.reflection.v1.ServerReflection",
        "ServerReflectionInfo",
        true,
    ),
    (
        "grpc.reflection.v1alpha.ServerReflection",
        "ServerReflectionInfo",
        true,
    ),
];

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Method {
    /// Fully qualified: `castplane.v1.ActionService`.
    pub service: Arc<str>,
    pub name: Arc<str>,
    /// Client or server streaming: the call can stay open for as long as the client likes.
    pub streaming: bool,
    /// Client streaming (uploads): the answer comes only after the client's last message, so
    /// the request timeout cannot bound it (the handler bounds the wait for each message).
    pub client_streaming: bool,
}

pub struct MethodTable {
    by_path: HashMap<String, Method>,
    public_services: Vec<String>,
}

impl MethodTable {
    /// The table for castplane's descriptor set (built on first use).
    pub fn get() -> &'static MethodTable {
        static TABLE: OnceLock<MethodTable> = OnceLock::new();
        TABLE.get_or_init(|| MethodTable::from_descriptor_set(castplane_proto::FILE_DESCRIPTOR_SET))
    }

    fn from_descriptor_set(encoded: &[u8]) -> MethodTable {
        // The set is compiled into the binary by build.rs, so it always decodes; an empty
        // table would only make every method `unknown`.
        let set = prost_types::FileDescriptorSet::decode(encoded).unwrap_or_default();
        let mut by_path = HashMap::new();
        let mut public_services = Vec::new();
        let mut add = |service: &str, name: &str, streaming: bool, client_streaming: bool| {
            by_path.insert(
                format!("/{service}/{name}"),
                Method {
                    service: service.into(),
                    name: name.into(),
                    streaming,
                    client_streaming,
                },
            );
        };
        for file in &set.file {
            let package = file.package();
            for service in &file.service {
                let full = format!("{package}.{}", service.name());
                if package == PUBLIC_PACKAGE {
                    public_services.push(full.clone());
                }
                for method in &service.method {
                    add(
                        &full,
                        method.name(),
                        method.client_streaming() || method.server_streaming(),
                        method.client_streaming(),
                    );
                }
            }
        }
        for (service, name, streaming) in EXTRA_METHODS {
            add(service, name, *streaming, false);
        }
        public_services.sort();
        MethodTable {
            by_path,
            public_services,
        }
    }

    /// The method a request path names, if the servers serve it.
    pub fn lookup(&self, path: &str) -> Option<&Method> {
        self.by_path.get(path)
    }

    /// `castplane.v1.AccountService`, … sorted.
    pub fn public_services(&self) -> &[String] {
        &self.public_services
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_knows_every_public_service_and_which_calls_stream() {
        let table = MethodTable::get();
        for service in [
            "castplane.v1.AccountService",
            "castplane.v1.ActionService",
            "castplane.v1.CatalogService",
            "castplane.v1.MediaLibraryService",
            "castplane.v1.MediaServiceService",
            "castplane.v1.NodeService",
        ] {
            assert!(
                table.public_services().iter().any(|s| s == service),
                "{service} missing from {:?}",
                table.public_services()
            );
        }
        let watch = table
            .lookup("/castplane.v1.ActionService/WatchAction")
            .expect("WatchAction");
        assert!(watch.streaming);
        let caller = table
            .lookup("/castplane.v1.AccountService/GetCaller")
            .expect("GetCaller");
        assert!(!caller.streaming);
        let upload = table
            .lookup("/castplane.v1.MediaLibraryService/UploadMediaTrack")
            .expect("UploadMediaTrack");
        assert!(
            upload.streaming,
            "an upload holds a stream slot while it lasts"
        );
        assert!(upload.client_streaming && !watch.client_streaming);
        assert!(table.lookup("/grpc.health.v1.Health/Check").is_some());
        assert!(
            table
                .lookup("/castplane.v1.AccountService/Made-Up")
                .is_none()
        );
    }
}
