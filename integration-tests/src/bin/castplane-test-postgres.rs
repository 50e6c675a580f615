//! nextest setup script (`.config/nextest.toml`): starts one throwaway PostgreSQL cluster for
//! the whole test run and hands its URL to every test as `CASTPLANE_TEST_DATABASE_URL`
//! (through the file nextest names in `NEXTEST_ENV`). The cluster stops and its files go when
//! the nextest process that ran this exits.

use std::io::Write;

fn main() -> anyhow::Result<()> {
    if let Ok(url) = std::env::var("CASTPLANE_TEST_DATABASE_URL")
        && !url.is_empty()
    {
        // A server was named: the tests use it as they are.
        return Ok(());
    }
    let runner = nix::unistd::getppid().as_raw() as u32;
    let url = castplane_integration_tests::postgres::start_cluster(runner)?;
    let env_file = std::env::var("NEXTEST_ENV").map_err(|_| {
        anyhow::anyhow!("NEXTEST_ENV is not set: run this as a nextest setup script")
    })?;
    let mut file = std::fs::OpenOptions::new().append(true).open(env_file)?;
    writeln!(file, "CASTPLANE_TEST_DATABASE_URL={url}")?;
    eprintln!("castplane-test-postgres: PostgreSQL for this run at {url}");
    Ok(())
}
