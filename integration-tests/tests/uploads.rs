//! The browsers' uploads over plain HTTP (`POST /uploads/v1/…`, what the console sends), on
//! SQLite and PostgreSQL, through a real control plane's public port over real TLS: the same
//! bearer check, quota, tenancy and "nothing kept" rules as the gRPC uploads, answered in
//! JSON a page can show.

use castplane_integration_tests::client::limits;
use castplane_integration_tests::fleet::{LONG, Setup};
use castplane_integration_tests::media::{
    create_video_service, customer_with_quota, mp3, mp4, sha256_hex, spooled_files, stored_blobs,
};
use castplane_integration_tests::uploads::{
    Answer, full, post, query, stalled, unsized_body, upload_track, upload_video,
};
use castplane_integration_tests::{Backend, conformance, wait_for};
use castplane_proto::v1 as pb;

conformance!(
    tracks_upload_over_http_within_the_quota_and_the_tenancy,
    bad_http_uploads_are_refused_precisely_and_keep_nothing,
    video_files_upload_over_http_to_a_video_service_only,
);

async fn tracks(s: &Setup, customer_id: &str) -> Vec<pb::MediaTrack> {
    s.admin
        .library()
        .list_media_tracks(pb::ListMediaTracksRequest {
            customer_id: customer_id.to_owned(),
            page_size: 1000,
            ..Default::default()
        })
        .await
        .expect("list tracks")
        .into_inner()
        .media_tracks
}

/// Nothing of a refused upload is left: no blob, no listed track, no spool file.
async fn keeps_nothing(s: &Setup, customer_id: &str, blobs: (i64, i64), listed: usize, what: &str) {
    assert_eq!(stored_blobs(&s.cp).await, blobs, "{what}: the store");
    assert_eq!(
        tracks(s, customer_id).await.len(),
        listed,
        "{what}: the library"
    );
    assert!(
        spooled_files(&s.cp).is_empty(),
        "{what}: {:?} spooled",
        spooled_files(&s.cp)
    );
}

fn refused(answer: &Answer, status: u16, code: &str, what: &str) {
    assert_eq!(
        (answer.status, answer.code()),
        (status, code),
        "{what}: {}",
        answer.json
    );
}

/// A console session of the customer: what the browser holds.
async fn session_of(s: &Setup, customer_id: &str) -> String {
    let email = format!("{customer_id}@example.com");
    let password = "correct horse battery staple";
    s.admin
        .logins()
        .set_login(pb::SetLoginRequest {
            principal_kind: pb::PrincipalKind::Customer as i32,
            principal_id: customer_id.to_owned(),
            email: email.clone(),
            password: password.to_owned(),
        })
        .await
        .expect("set login");
    s.cp.client("")
        .await
        .sessions()
        .create_session(pb::CreateSessionRequest {
            email,
            password: password.to_owned(),
        })
        .await
        .expect("sign in")
        .into_inner()
        .token
}

async fn tracks_upload_over_http_within_the_quota_and_the_tenancy(backend: Backend) {
    let (s, agent, customer) = customer_with_quota(backend, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 3)).expect("mp3");

    // The customer's own console session uploads; the answer is the stored track.
    let session = session_of(&s, &customer.id).await;
    let answer = upload_track(&s.cp, &session, &customer.id, "Morning Tone.mp3", &tone).await;
    assert_eq!(answer.status, 201, "{}", answer.json);
    let track = &answer.json;
    assert_eq!(track["displayName"], "Morning Tone.mp3");
    assert_eq!(track["customerId"], customer.id.as_str());
    assert_eq!(
        track["sizeBytes"],
        tone.len().to_string(),
        "uint64 as a string"
    );
    assert_eq!(track["sha256"], sha256_hex(&tone));
    assert_eq!(
        (track["format"].as_str(), track["codec"].as_str()),
        (Some("mp3"), Some("mp3"))
    );
    let seconds = track["durationSeconds"].as_f64().expect("a duration");
    assert!((2.5..3.5).contains(&seconds), "{seconds}");
    assert!(
        track["createTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{track}"
    );
    let listed = tracks(&s, &customer.id).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        track["id"],
        listed[0].id.as_str(),
        "the same track over gRPC"
    );
    assert_eq!(stored_blobs(&s.cp).await, (1, 1));

    // Over the quota (1 MB for the customer's one service): refused naming asked and
    // available, in the message and in ErrorInfo, before anything is kept.
    let long = std::fs::read(mp3(dir.path(), "long.mp3", 330, 70)).expect("mp3");
    let available = (1u64 << 20) - tone.len() as u64;
    let answer = upload_track(&s.cp, &session, &customer.id, "long.mp3", &long).await;
    refused(&answer, 429, "RESOURCE_EXHAUSTED", "over the quota");
    assert!(
        answer.message().contains(&format!(
            "asked for {} bytes, {available} bytes available",
            long.len()
        )),
        "{}",
        answer.message()
    );
    let info = answer.detail("ErrorInfo").expect("ErrorInfo");
    assert_eq!(info["reason"], "QUOTA_EXCEEDED");
    assert_eq!(info["metadata"]["resource"], "disk_mb");
    assert_eq!(info["metadata"]["asked"], long.len().to_string());
    assert_eq!(info["metadata"]["available"], available.to_string());
    let quota = answer.detail("QuotaFailure").expect("QuotaFailure");
    assert_eq!(
        quota["violations"][0]["subject"],
        format!("customer:{}/disk_mb", customer.id)
    );
    keeps_nothing(&s, &customer.id, (1, 1), 1, "over the quota").await;

    // Another reseller's token: the customer does not exist for it.
    let stranger = s
        .admin
        .create_reseller(
            "Elsewhere",
            limits(None, None, None, None, None, None),
            &[pb::ServiceType::Icecast],
        )
        .await;
    let stranger = s
        .admin
        .token_for(pb::PrincipalKind::Reseller, &stranger.id)
        .await;
    let answer = upload_track(&s.cp, &stranger, &customer.id, "tone.mp3", &tone).await;
    refused(&answer, 404, "NOT_FOUND", "another reseller's customer");
    assert!(
        answer.message().contains(&customer.id),
        "{}",
        answer.message()
    );
    keeps_nothing(&s, &customer.id, (1, 1), 1, "another reseller's customer").await;

    // No token, a wrong one, a signed-out session: the auth layer's refusal, in JSON.
    let path = format!(
        "/uploads/v1/customers/{}/tracks{}",
        customer.id,
        query("t.mp3", &tone)
    );
    let length = Some(tone.len() as u64);
    let answer = post(&s.cp, None, &path, length, full(&tone)).await;
    refused(&answer, 401, "UNAUTHENTICATED", "no token");
    assert!(answer.message().contains("Bearer"), "{}", answer.message());
    let answer = post(&s.cp, Some("not-a-token"), &path, length, full(&tone)).await;
    refused(&answer, 401, "UNAUTHENTICATED", "a wrong token");
    s.cp.client(&session)
        .await
        .sessions()
        .delete_session(pb::DeleteSessionRequest {})
        .await
        .expect("sign out");
    let answer = post(&s.cp, Some(&session), &path, length, full(&tone)).await;
    refused(&answer, 401, "UNAUTHENTICATED", "a signed-out session");
    assert!(
        answer.message().contains("sign in again"),
        "{}",
        answer.message()
    );
    keeps_nothing(&s, &customer.id, (1, 1), 1, "unauthenticated").await;
    agent.shutdown().await;
}

async fn bad_http_uploads_are_refused_precisely_and_keep_nothing(backend: Backend) {
    let (s, agent, customer) = customer_with_quota(backend, 50).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 3)).expect("mp3");
    let token = s.cp.admin_token();
    let tracks_of = |id: &str| format!("/uploads/v1/customers/{id}/tracks");
    let length = Some(tone.len() as u64);

    // No Content-Length: the size cannot be checked against the quota before reading.
    let path = format!("{}{}", tracks_of(&customer.id), query("tone.mp3", &tone));
    let answer = post(&s.cp, Some(&token), &path, None, unsized_body(&tone)).await;
    refused(&answer, 411, "INVALID_ARGUMENT", "no length");
    assert_eq!(answer.bad_fields(), ["Content-Length"]);

    // Ids that cannot name a customer, and one that names none.
    let path = format!("{}{}", tracks_of("not-an-id"), query("tone.mp3", &tone));
    let answer = post(&s.cp, Some(&token), &path, length, full(&tone)).await;
    refused(&answer, 400, "INVALID_ARGUMENT", "a malformed id");
    assert_eq!(answer.bad_fields(), ["customer_id"]);
    let nobody = "cus_00000000000000000000000000";
    let answer = upload_track(&s.cp, &token, nobody, "tone.mp3", &tone).await;
    refused(&answer, 404, "NOT_FOUND", "an unknown customer");

    // The query: both parameters required, nothing else taken, nothing twice.
    let sha = sha256_hex(&tone);
    for (query, fields) in [
        (format!("?sha256={sha}"), vec!["file_name"]),
        ("?file_name=tone.mp3".to_owned(), vec!["sha256"]),
        (String::new(), vec!["file_name", "sha256"]),
        (
            format!("?file_name=a.mp3&file_name=b.mp3&sha256={sha}"),
            vec!["file_name"],
        ),
        (
            format!("?file_name=a.mp3&sha256={sha}&size=3"),
            vec!["query"],
        ),
        (
            "?file_name=a.mp3&sha256=ABC".to_owned(),
            vec!["file.sha256"],
        ),
        (
            format!("?file_name=bell%07.mp3&sha256={sha}"),
            vec!["file.file_name"],
        ),
    ] {
        let path = format!("{}{query}", tracks_of(&customer.id));
        let answer = post(&s.cp, Some(&token), &path, length, full(&tone)).await;
        refused(&answer, 400, "INVALID_ARGUMENT", &query);
        assert_eq!(answer.bad_fields(), fields, "{query}: {}", answer.json);
    }
    keeps_nothing(&s, &customer.id, (0, 0), 0, "bad requests").await;

    // Bodies that are not what the request says: another checksum, not audio.
    let mut wrong = query("tone.mp3", &tone);
    wrong = wrong.replace(&sha, &sha256_hex(b"other bytes"));
    let path = format!("{}{wrong}", tracks_of(&customer.id));
    let answer = post(&s.cp, Some(&token), &path, length, full(&tone)).await;
    refused(&answer, 400, "INVALID_ARGUMENT", "another checksum");
    assert!(answer.message().contains("hash to"), "{}", answer.message());
    let text = b"this is not audio at all";
    let answer = upload_track(&s.cp, &token, &customer.id, "song.mp3", text).await;
    refused(&answer, 400, "INVALID_ARGUMENT", "not audio");
    assert!(
        answer.message().contains("not audio"),
        "{}",
        answer.message()
    );
    keeps_nothing(&s, &customer.id, (0, 0), 0, "bad bodies").await;

    // Cut off halfway: the spool file goes with the connection, nothing is kept.
    let path = format!("{}{}", tracks_of(&customer.id), query("tone.mp3", &tone));
    let half = tone[..tone.len() / 2].to_vec();
    // Dropping the call resets its stream, as a closed tab would.
    let call = post(&s.cp, Some(&token), &path, length, stalled(&half));
    tokio::select! {
        answer = call => panic!("a stalled upload answered: {answer:?}"),
        () = wait_for("the upload to be spooling", LONG, || {
            let files = spooled_files(&s.cp);
            async move { (!files.is_empty()).then_some(()) }
        }) => {}
    }
    wait_for("the cut-off upload's spool file to go", LONG, || {
        let files = spooled_files(&s.cp);
        async move { files.is_empty().then_some(()) }
    })
    .await;
    keeps_nothing(&s, &customer.id, (0, 0), 0, "cut off").await;

    // And the retry works.
    let answer = upload_track(&s.cp, &token, &customer.id, "tone.mp3", &tone).await;
    assert_eq!(answer.status, 201, "{}", answer.json);
    assert_eq!(tracks(&s, &customer.id).await.len(), 1);
    agent.shutdown().await;
}

async fn video_files_upload_over_http_to_a_video_service_only(backend: Backend) {
    let (s, agent, customer) = customer_with_quota(backend, 50).await;
    let video_service = create_video_service(&s.admin, &customer.id, "clips-tv", 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = std::fs::read(mp4(dir.path(), "clip.mp4", 1)).expect("mp4");
    let token = s.cp.admin_token();

    let answer = upload_video(&s.cp, &token, &video_service.id, "Holiday Clip.mp4", &clip).await;
    assert_eq!(answer.status, 201, "{}", answer.json);
    assert_eq!(answer.json["displayName"], "Holiday Clip.mp4");
    assert_eq!(answer.json["mediaServiceId"], video_service.id.as_str());
    let id = answer.json["id"].as_str().expect("an id");
    let http = castplane_integration_tests::fleet::http_port(&video_service);
    assert_eq!(
        answer.json["url"],
        format!("http://127.0.0.1:{http}/videos/{id}.mp4")
    );
    let listed = s
        .admin
        .library()
        .list_video_files(pb::ListVideoFilesRequest {
            media_service_id: video_service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .video_files;
    assert_eq!(
        listed.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        [id]
    );

    // Over the service's own quota (5 MB), and to an audio service.
    let big = vec![0u8; 6 << 20];
    let answer = upload_video(&s.cp, &token, &video_service.id, "big.mp4", &big).await;
    refused(
        &answer,
        429,
        "RESOURCE_EXHAUSTED",
        "over the service's quota",
    );
    assert!(
        answer.message().contains("the service's disk"),
        "{}",
        answer.message()
    );
    let audio = s
        .admin
        .media()
        .list_media_services(pb::ListMediaServicesRequest {
            customer_id: customer.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .media_services
        .into_iter()
        .find(|m| m.r#type == pb::ServiceType::Icecast as i32)
        .expect("the icecast service");
    let answer = upload_video(&s.cp, &token, &audio.id, "clip.mp4", &clip).await;
    refused(&answer, 400, "FAILED_PRECONDITION", "an audio service");
    assert!(
        answer
            .detail("PreconditionFailure")
            .is_some_and(|d| d["violations"][0]["type"] == "NOT_A_VIDEO_SERVICE"),
        "{}",
        answer.json
    );
    assert_eq!(stored_blobs(&s.cp).await, (1, 1), "only the clip is stored");
    agent.shutdown().await;
}
