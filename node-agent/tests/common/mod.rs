//! Helpers shared by the supervisor tests: polling with a deadline and reading observed state.
// Each test binary uses its own subset of these.
#![allow(dead_code)]

use std::future::Future;
use std::time::{Duration, Instant};

use castplane_agent::supervisor::Supervisor;
use castplane_proto::agent::v1::ObservedService;
use castplane_proto::v1::ObservedState;

/// Generous: liquidsoap alone needs seconds of CPU to start on a loaded 2-core machine, and
/// the deadline only matters when a test is failing anyway.
pub const DEADLINE: Duration = Duration::from_secs(90);

pub const POLL: Duration = Duration::from_millis(50);

pub async fn wait_until<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + DEADLINE;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

pub async fn observed(sup: &Supervisor, id: &str) -> Option<ObservedService> {
    sup.observed()
        .await
        .into_iter()
        .find(|o| o.media_service_id == id)
}

pub fn state_of(o: &ObservedService) -> (ObservedState, String) {
    let status = o.status.clone().unwrap_or_default();
    (
        ObservedState::try_from(status.state).unwrap_or(ObservedState::Unspecified),
        status.message,
    )
}

/// Waits for `state` and returns its message.
pub async fn wait_state(sup: &Supervisor, id: &str, state: ObservedState) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let now = observed(sup, id).await.map(|o| state_of(&o));
        if let Some((s, message)) = &now
            && *s == state
        {
            return message.clone();
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {id} to be {state:?}; it is {now:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

pub async fn port_accepts(port: u16) -> bool {
    tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
}

pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local addr").port()
}
