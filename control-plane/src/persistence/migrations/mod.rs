//! Schema migrations, applied in order at startup. Named by date; never edited once landed.

use sea_orm_migration::async_trait;
use sea_orm_migration::prelude::*;

mod m20261128_000001_initial;
mod m20261201_000001_dispatch;
mod m20261201_100001_console_logins;
mod m20261201_300001_node_bind_address;
mod m20261201_500001_media;
mod m20261201_800001_account_deletion;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_initial::Migration),
            Box::new(m20261201_000001_dispatch::Migration),
            Box::new(m20261201_300001_node_bind_address::Migration),
            Box::new(m20261201_100001_console_logins::Migration),
            Box::new(m20261201_500001_media::Migration),
            Box::new(m20261201_800001_account_deletion::Migration),
        ]
    }
}
