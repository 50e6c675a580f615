//! sea-orm entities, one per table. The schema itself lives in `../migrations`.

pub mod action;
pub mod api_token;
pub mod blob;
pub mod blob_chunk;
pub mod cluster_state;
pub mod console_session;
pub mod customer;
pub mod login;
pub mod media_service;
pub mod media_track;
pub mod node;
pub mod node_capability;
pub mod observed_service;
pub mod ownership_change;
pub mod port_allocation;
pub mod replica;
pub mod reseller;
pub mod video_file;
