//! Every castplane message as a `prost_reflect::DynamicMessage`, described by the descriptors
//! compiled into this crate: what generic code walks (the control plane's input checks) and
//! prints (castctl's `-o json` / `-o yaml`), so a new field is never forgotten by either.

use std::sync::LazyLock;

use prost::{Message, Name};
use prost_reflect::{DescriptorPool, DynamicMessage, MessageDescriptor};

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(crate::FILE_DESCRIPTOR_SET).unwrap_or_else(|_| DescriptorPool::global())
});

/// The descriptors of every castplane proto (and the well-known types they import).
pub fn pool() -> &'static DescriptorPool {
    &POOL
}

pub fn descriptor<M: Name>() -> Option<MessageDescriptor> {
    POOL.get_message_by_name(&M::full_name())
}

/// `message` as a dynamic message; `None` only if this crate's descriptors lack its type.
pub fn to_dynamic<M: Message + Name>(message: &M) -> Option<DynamicMessage> {
    DynamicMessage::decode(descriptor::<M>()?, message.encode_to_vec().as_slice()).ok()
}

#[cfg(test)]
mod tests {
    use prost_reflect::ReflectMessage;

    use super::*;
    use crate::v1;

    #[test]
    fn every_message_has_its_descriptor() {
        let reseller = v1::Reseller {
            id: "rsl_1".into(),
            ..Default::default()
        };
        let dynamic = to_dynamic(&reseller).expect("described");
        assert_eq!(dynamic.descriptor().full_name(), "castplane.v1.Reseller");
        assert!(descriptor::<crate::agent::v1::ServiceSpec>().is_some());
        assert!(descriptor::<prost_types::Timestamp>().is_some());
    }
}
