//! What the console relies on, through the public API, against SQLite and PostgreSQL: sign-in
//! with a password, sessions that sign out and expire, lockout after repeated failures, who may
//! set whose login, quota refusals a form can show beside its field, service search and the
//! newest actions first.

use std::time::Duration;

use castplane_control::ServiceConfig;
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::{
    AgentHandle, Backend, Client, ControlPlaneHandle, conformance, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

conformance!(
    a_password_signs_in_and_the_session_works_until_signed_out,
    wrong_passwords_lock_the_login_on_every_replica_until_it_is_reset,
    unused_sessions_expire,
    logins_are_set_by_whoever_manages_the_account,
    the_owner_changes_its_password_and_its_other_sessions_end,
    quota_refusals_say_what_was_asked_and_what_is_available,
    services_can_be_searched_and_actions_listed_newest_first,
);

const PASSWORD: &str = "correct horse battery staple";

fn unlimited() -> pb::ResellerLimits {
    limits(None, None, None, None, None, None)
}

async fn set_login(
    by: &Client,
    kind: pb::PrincipalKind,
    id: &str,
    email: &str,
    password: &str,
) -> Result<pb::Login, tonic::Status> {
    by.logins()
        .set_login(pb::SetLoginRequest {
            principal_kind: kind as i32,
            principal_id: id.to_owned(),
            email: email.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn sign_in(
    cp: &ControlPlaneHandle,
    email: &str,
    password: &str,
) -> Result<pb::CreateSessionResponse, tonic::Status> {
    // No token at all: signing in is the one call that needs none.
    cp.client("")
        .await
        .sessions()
        .create_session(pb::CreateSessionRequest {
            email: email.to_owned(),
            password: password.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
}

/// A fresh control plane and a reseller whose login the admin has set to `email` / PASSWORD.
async fn reseller_with_login(
    backend: Backend,
    name: &str,
    email: &str,
) -> (ControlPlaneHandle, Client, pb::Reseller) {
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let reseller = admin
        .create_reseller(name, unlimited(), &[pb::ServiceType::Icecast])
        .await;
    set_login(
        &admin,
        pb::PrincipalKind::Reseller,
        &reseller.id,
        email,
        PASSWORD,
    )
    .await
    .expect("the admin sets the reseller's login");
    (cp, admin, reseller)
}

async fn reseller_login(admin: &Client, reseller: &pb::Reseller) -> pb::Login {
    admin
        .logins()
        .get_login(pb::GetLoginRequest {
            principal_kind: pb::PrincipalKind::Reseller as i32,
            principal_id: reseller.id.clone(),
        })
        .await
        .expect("get login")
        .into_inner()
}

/// The reseller's own API client.
async fn as_reseller(cp: &ControlPlaneHandle, admin: &Client, reseller: &pb::Reseller) -> Client {
    cp.client(
        &admin
            .token_for(pb::PrincipalKind::Reseller, &reseller.id)
            .await,
    )
    .await
}

async fn caller(client: &Client) -> Result<pb::Caller, tonic::Status> {
    client
        .accounts()
        .get_caller(pb::GetCallerRequest {})
        .await
        .map(tonic::Response::into_inner)
}

async fn a_password_signs_in_and_the_session_works_until_signed_out(backend: Backend) {
    let (cp, admin, reseller) =
        reseller_with_login(backend, "Signal FM", " Ops@Signal.example ").await;
    let login = reseller_login(&admin, &reseller).await;
    assert_eq!(login.email, "ops@signal.example");

    // The email is matched whatever its case; the session acts as the reseller.
    let session = sign_in(&cp, "OPS@signal.example", PASSWORD)
        .await
        .expect("sign in");
    assert!(session.token.starts_with("cps_"), "{session:?}");
    assert_eq!(
        session.caller.as_ref().map(|c| c.principal_id.as_str()),
        Some(reseller.id.as_str())
    );
    assert!(session.expire_time.is_some() && session.idle_timeout_seconds > 0);
    let browser = cp.client(&session.token).await;
    let me = caller(&browser).await.expect("the session authenticates");
    assert_eq!(me.principal_kind, pb::PrincipalKind::Reseller as i32);
    assert_eq!(me.display_name, "Signal FM");

    // Unknown email and wrong password are refused alike, and reveal nothing more.
    let unknown = sign_in(&cp, "nobody@signal.example", PASSWORD)
        .await
        .unwrap_err();
    let wrong = sign_in(&cp, "ops@signal.example", "not the password")
        .await
        .unwrap_err();
    for refusal in [&unknown, &wrong] {
        assert_eq!(refusal.code(), Code::Unauthenticated, "{refusal:?}");
        assert_eq!(refusal.message(), "wrong email or password");
    }

    // Signing out ends the session at once; API tokens are unaffected and have no session.
    browser
        .sessions()
        .delete_session(pb::DeleteSessionRequest {})
        .await
        .expect("sign out");
    let after = caller(&browser).await.unwrap_err();
    assert_eq!(after.code(), Code::Unauthenticated, "{after:?}");
    let not_a_session = admin
        .sessions()
        .delete_session(pb::DeleteSessionRequest {})
        .await
        .unwrap_err();
    assert_eq!(not_a_session.code(), Code::FailedPrecondition);
    caller(&admin)
        .await
        .expect("the admin's API token still works");
}

async fn wrong_passwords_lock_the_login_on_every_replica_until_it_is_reset(backend: Backend) {
    let email = "ops@lock.example";
    let (cp, admin, reseller) = reseller_with_login(backend, "Lock FM", email).await;
    for attempt in 1..5 {
        let err = sign_in(&cp, email, "guess guess guess").await.unwrap_err();
        assert_eq!(
            err.code(),
            Code::Unauthenticated,
            "attempt {attempt}: {err:?}"
        );
    }
    let fifth = sign_in(&cp, email, "guess guess guess").await.unwrap_err();
    assert_eq!(fifth.code(), Code::ResourceExhausted, "{fifth:?}");
    assert!(fifth.message().contains("locked"), "{}", fifth.message());
    let retry = fifth.get_details_retry_info().expect("RetryInfo");
    assert!(
        retry
            .retry_delay
            .is_some_and(|d| d > Duration::from_secs(60)),
        "{retry:?}"
    );

    // Even the right password is refused while locked, and the admin sees the lock.
    let right = sign_in(&cp, email, PASSWORD).await.unwrap_err();
    assert_eq!(right.code(), Code::ResourceExhausted, "{right:?}");
    let login = reseller_login(&admin, &reseller).await;
    assert!(login.lock_expire_time.is_some(), "{login:?}");
    if backend == Backend::Postgres {
        // The lock is in the database: another replica refuses too.
        let replica = cp.start_replica().await;
        let elsewhere = sign_in(&replica, email, PASSWORD).await.unwrap_err();
        assert_eq!(elsewhere.code(), Code::ResourceExhausted, "{elsewhere:?}");
    }

    // Whoever manages the account sets a new password, which lifts the lock.
    set_login(
        &admin,
        pb::PrincipalKind::Reseller,
        &reseller.id,
        email,
        "a brand new password",
    )
    .await
    .expect("reset");
    sign_in(&cp, email, "a brand new password")
        .await
        .expect("signs in after the reset");
    let old = sign_in(&cp, email, PASSWORD).await.unwrap_err();
    assert_eq!(old.code(), Code::Unauthenticated);
}

async fn unused_sessions_expire(backend: Backend) {
    let config = ServiceConfig {
        session_idle_timeout: Duration::from_secs(2),
        ..Default::default()
    };
    let cp = ControlPlaneHandle::start_with(backend, config).await;
    let admin = cp.admin().await;
    set_login(
        &admin,
        pb::PrincipalKind::Admin,
        "",
        "root@provider.example",
        PASSWORD,
    )
    .await
    .expect("the admin sets its own login");
    let session = sign_in(&cp, "root@provider.example", PASSWORD)
        .await
        .expect("sign in");
    assert_eq!(session.idle_timeout_seconds, 2);
    let browser = cp.client(&session.token).await;
    caller(&browser).await.expect("fresh session works");
    let refused = wait_for(
        "the idle session to expire",
        Duration::from_secs(20),
        || {
            let browser = browser.clone();
            async move { caller(&browser).await.err() }
        },
    )
    .await;
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(
        refused.message().contains("expired"),
        "{}",
        refused.message()
    );
}

async fn logins_are_set_by_whoever_manages_the_account(backend: Backend) {
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let mine = admin
        .create_reseller("Mine", unlimited(), &[pb::ServiceType::Icecast])
        .await;
    let theirs = admin
        .create_reseller("Theirs", unlimited(), &[pb::ServiceType::Icecast])
        .await;
    let reseller = as_reseller(&cp, &admin, &mine).await;
    let my_customer = reseller.create_customer("", "Listener Club").await;
    let their_customer = admin.create_customer(&theirs.id, "Elsewhere").await;

    // A reseller sets its sub-accounts' logins; the customer then signs in as itself.
    set_login(
        &reseller,
        pb::PrincipalKind::Customer,
        &my_customer.id,
        "club@mine.example",
        PASSWORD,
    )
    .await
    .expect("reseller sets its customer's login");
    let session = sign_in(&cp, "club@mine.example", PASSWORD)
        .await
        .expect("customer signs in");
    let customer = cp.client(&session.token).await;
    let me = caller(&customer).await.expect("caller");
    assert_eq!(me.principal_kind, pb::PrincipalKind::Customer as i32);
    assert_eq!(me.principal_id, my_customer.id);

    // Outside its tenancy: not found. Its own login and its primary account: not its to set.
    let cases = [
        (
            pb::PrincipalKind::Customer,
            their_customer.id.as_str(),
            Code::NotFound,
        ),
        (
            pb::PrincipalKind::Reseller,
            theirs.id.as_str(),
            Code::NotFound,
        ),
        (
            pb::PrincipalKind::Reseller,
            mine.id.as_str(),
            Code::PermissionDenied,
        ),
        (
            pb::PrincipalKind::Customer,
            mine.primary_customer_id.as_str(),
            Code::FailedPrecondition,
        ),
        (pb::PrincipalKind::Admin, "", Code::PermissionDenied),
    ];
    for (kind, id, code) in cases {
        let err = set_login(&reseller, kind, id, "x@mine.example", PASSWORD)
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{kind:?} {id}: {err:?}");
    }
    // A customer sets no logins, not even its own.
    let err = set_login(
        &customer,
        pb::PrincipalKind::Customer,
        &my_customer.id,
        "club@mine.example",
        "another long password",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // Bad input names its fields and changes nothing; an email is one login's only.
    let err = set_login(
        &admin,
        pb::PrincipalKind::Reseller,
        &mine.id,
        "not-an-email",
        "short",
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    let fields: Vec<String> = err
        .get_details_bad_request()
        .expect("BadRequest")
        .field_violations
        .into_iter()
        .map(|v| v.field)
        .collect();
    assert_eq!(fields, ["email", "password"]);
    let taken = set_login(
        &admin,
        pb::PrincipalKind::Reseller,
        &mine.id,
        "CLUB@mine.example",
        PASSWORD,
    )
    .await
    .unwrap_err();
    assert_eq!(taken.code(), Code::AlreadyExists, "{taken:?}");

    // Removing a login ends its sessions.
    admin
        .logins()
        .delete_login(pb::DeleteLoginRequest {
            principal_kind: pb::PrincipalKind::Customer as i32,
            principal_id: my_customer.id.clone(),
        })
        .await
        .expect("delete login");
    assert_eq!(
        caller(&customer).await.unwrap_err().code(),
        Code::Unauthenticated
    );
}

async fn the_owner_changes_its_password_and_its_other_sessions_end(backend: Backend) {
    let email = "me@owner.example";
    let (cp, _admin, _reseller) = reseller_with_login(backend, "Owner FM", email).await;
    let laptop = cp
        .client(&sign_in(&cp, email, PASSWORD).await.expect("sign in").token)
        .await;
    let phone = cp
        .client(&sign_in(&cp, email, PASSWORD).await.expect("sign in").token)
        .await;

    let change = |current: &str, new: &str| {
        let laptop = laptop.clone();
        let request = pb::ChangePasswordRequest {
            current_password: current.to_owned(),
            new_password: new.to_owned(),
        };
        async move { laptop.logins().change_password(request).await }
    };
    let wrong = change("not my password", "my new long password")
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::InvalidArgument, "{wrong:?}");
    assert_eq!(
        wrong
            .get_details_bad_request()
            .expect("BadRequest")
            .field_violations[0]
            .field,
        "current_password"
    );
    change(PASSWORD, "my new long password")
        .await
        .expect("change password");
    caller(&laptop)
        .await
        .expect("the session that changed it stays");
    assert_eq!(
        caller(&phone).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    assert_eq!(
        sign_in(&cp, email, PASSWORD).await.unwrap_err().code(),
        Code::Unauthenticated
    );
    sign_in(&cp, email, "my new long password")
        .await
        .expect("the new password signs in");
}

/// A node with a connected agent, so services can be placed (they are never started here).
async fn with_node(backend: Backend) -> (ControlPlaneHandle, Client, AgentHandle) {
    let cp = ControlPlaneHandle::start(backend).await;
    let admin = cp.admin().await;
    let (first, last) = free_port_range(10);
    let (node, token) = admin.create_node("console-node", first, last).await;
    let agent = AgentHandle::join_and_start(&cp, &token).await;
    admin
        .wait_node_ready(&node.id, pb::ServiceType::Icecast)
        .await;
    (cp, admin, agent)
}

async fn quota_refusals_say_what_was_asked_and_what_is_available(backend: Backend) {
    let (cp, admin, _agent) = with_node(backend).await;
    let reseller = admin
        .create_reseller(
            "Tight FM",
            limits(None, None, Some(50), None, None, None),
            &[pb::ServiceType::Icecast],
        )
        .await;
    let client = cp
        .client(
            &admin
                .token_for(pb::PrincipalKind::Reseller, &reseller.id)
                .await,
        )
        .await;
    client
        .media()
        .create_media_service(icecast_request(&reseller.primary_customer_id, "first", 30))
        .await
        .expect("fits");
    let err = client
        .media()
        .create_media_service(icecast_request(&reseller.primary_customer_id, "second", 80))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    let info = err.get_details_error_info().expect("ErrorInfo");
    assert_eq!(info.reason, "QUOTA_EXCEEDED");
    assert_eq!(info.metadata["resource"], "listener_slots");
    assert_eq!(info.metadata["asked"], "80");
    assert_eq!(info.metadata["available"], "20");
}

async fn services_can_be_searched_and_actions_listed_newest_first(backend: Backend) {
    let (cp, admin, _agent) = with_node(backend).await;
    let reseller = admin
        .create_reseller("Search FM", unlimited(), &[pb::ServiceType::Icecast])
        .await;
    let client = cp
        .client(
            &admin
                .token_for(pb::PrincipalKind::Reseller, &reseller.id)
                .await,
        )
        .await;
    let owner = &reseller.primary_customer_id;
    let mut ids = Vec::new();
    for (name, display) in [
        ("morning-show", "Morning Show"),
        ("jazz-nights", "Late 100%_Jazz"),
        ("news", "Newsroom"),
    ] {
        let mut request = icecast_request(owner, name, 5);
        if let Some(s) = request.media_service.as_mut() {
            s.display_name = display.to_owned();
        }
        let service = client
            .media()
            .create_media_service(request)
            .await
            .expect("create")
            .into_inner();
        ids.push(service.id);
    }
    let search = |query: &str| {
        let client = client.clone();
        let query = query.to_owned();
        async move {
            let mut names: Vec<String> = client
                .media()
                .list_media_services(pb::ListMediaServicesRequest {
                    query,
                    ..Default::default()
                })
                .await
                .expect("list")
                .into_inner()
                .media_services
                .into_iter()
                .map(|s| s.name)
                .collect();
            names.sort();
            names
        }
    };
    // Name or display name, any case; LIKE wildcards are plain characters.
    assert_eq!(search("SHOW").await, ["morning-show"]);
    assert_eq!(search("n").await, ["jazz-nights", "morning-show", "news"]);
    assert_eq!(search("100%_").await, ["jazz-nights"]);
    assert_eq!(search("%").await, ["jazz-nights"]);
    assert!(search("_z").await.is_empty());

    // Newest first, paged stably.
    let mut queued = Vec::new();
    for id in &ids {
        let action = client
            .media()
            .start_media_service(pb::StartMediaServiceRequest { id: id.clone() })
            .await
            .expect("start")
            .into_inner();
        queued.push(action.id);
    }
    let mut seen = Vec::new();
    let mut page_token = String::new();
    loop {
        let page = client
            .actions()
            .list_actions(pb::ListActionsRequest {
                order_by: "create_time desc".to_owned(),
                page_size: 2,
                page_token,
                ..Default::default()
            })
            .await
            .expect("list actions")
            .into_inner();
        seen.extend(page.actions.into_iter().map(|a| a.id));
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    queued.reverse();
    assert_eq!(seen, queued);
    let bad = client
        .actions()
        .list_actions(pb::ListActionsRequest {
            order_by: "sequence".to_owned(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    // Stop what was started so no icecast2 outlives the test.
    for id in &ids {
        let action = client
            .media()
            .stop_media_service(pb::StopMediaServiceRequest { id: id.clone() })
            .await
            .expect("stop")
            .into_inner();
        client
            .finished_action(&action.id, Duration::from_secs(60))
            .await;
    }
}
