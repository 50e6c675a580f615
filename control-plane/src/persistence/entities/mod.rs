//! sea-orm entities, one per table. The schema itself lives in `../migrations`.

pub mod action;
pub mod action_transition;
pub mod api_token;
pub mod cluster_state;
pub mod customer;
pub mod media_service;
pub mod node;
pub mod node_capability;
pub mod observed_service;
pub mod ownership_change;
pub mod port_allocation;
pub mod replica;
pub mod reseller;
