//! Uploaded media through the public API: customers' libraries of tracks and video services'
//! files — the blob store on SQLite and PostgreSQL, the media quota, what a bad or interrupted
//! upload leaves (nothing), and, with real agents, liquidsoap and nginx, that the bytes reach
//! the nodes that need them and play there.

use std::time::Duration;

use castplane_control::ServiceConfig;
use castplane_integration_tests::client::{icecast_request, limits};
use castplane_integration_tests::fleet::{LONG, setup, start, succeeded, wait_online};
use castplane_integration_tests::media::{
    create_video_service, customer_with_quota, header, mp3, mp4, sha256_hex, spooled_files,
    stored_blobs, track_messages, upload_track, upload_video,
};
use castplane_integration_tests::streaming::{
    liquidsoap_pid, looks_like_mp3, read_stream, wait_for_stream,
};
use castplane_integration_tests::{
    AgentHandle, Backend, Client, conformance, free_port_range, wait_for,
};
use castplane_proto::v1 as pb;
use tonic::Code;
use tonic_types::StatusExt;

conformance!(
    tracks_upload_list_get_delete_within_the_media_quota,
    bad_and_interrupted_uploads_keep_nothing_and_a_retry_works,
    a_forced_customer_delete_destroys_its_tracks_in_the_store_and_on_the_nodes,
);

fn code<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    what: &str,
) -> tonic::Status {
    match result {
        Err(status) if status.code() == code => status,
        other => panic!("{what}: expected {code:?}, got {other:?}"),
    }
}

async fn tracks(client: &Client, customer_id: &str) -> Vec<pb::MediaTrack> {
    client
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

async fn tracks_upload_list_get_delete_within_the_media_quota(backend: Backend) {
    let (s, agent, customer) = customer_with_quota(backend, 1).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 3)).expect("mp3");

    // A customer without services has no disk quota: refused before any byte is kept.
    let reseller_id = customer.reseller_id.clone();
    let empty = s.admin.create_customer(&reseller_id, "No Services").await;
    let refused = code(
        upload_track(&s.admin, &empty.id, "tone.mp3", &tone).await,
        Code::ResourceExhausted,
        "upload without quota",
    );
    assert!(
        refused.message().contains(&format!(
            "asked for {} bytes, 0 bytes available",
            tone.len()
        )),
        "{}",
        refused.message()
    );
    let quota = refused.get_details_quota_failure().expect("QuotaFailure");
    assert_eq!(
        quota.violations[0].subject,
        format!("customer:{}/disk_mb", empty.id)
    );
    assert_eq!(stored_blobs(&s.cp).await, (0, 0));

    // Upload, list, get.
    let track = upload_track(&s.admin, &customer.id, "Morning Tone.mp3", &tone)
        .await
        .expect("upload");
    assert_eq!(track.display_name, "Morning Tone.mp3");
    assert_eq!(track.customer_id, customer.id);
    assert_eq!(track.size_bytes, tone.len() as u64);
    assert_eq!(track.sha256, sha256_hex(&tone));
    assert_eq!(
        (track.format.as_str(), track.codec.as_str()),
        ("mp3", "mp3")
    );
    assert!(
        (2.5..3.5).contains(&track.duration_seconds),
        "{}",
        track.duration_seconds
    );
    assert!(
        (100_000..160_000).contains(&track.bit_rate),
        "{}",
        track.bit_rate
    );
    assert_eq!(tracks(&s.admin, &customer.id).await, vec![track.clone()]);
    let got = s
        .admin
        .library()
        .get_media_track(pb::GetMediaTrackRequest {
            id: track.id.clone(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(got, track);
    let (blobs, chunks) = stored_blobs(&s.cp).await;
    assert_eq!((blobs, chunks), (1, 1));

    // The same customer may upload as itself; another reseller sees nothing of it.
    let own = s
        .admin
        .token_for(pb::PrincipalKind::Customer, &customer.id)
        .await;
    let own = s.cp.client(&own).await;
    assert_eq!(tracks(&own, &customer.id).await.len(), 1);
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
    let stranger = s.cp.client(&stranger).await;
    code(
        stranger
            .library()
            .get_media_track(pb::GetMediaTrackRequest {
                id: track.id.clone(),
            })
            .await,
        Code::NotFound,
        "another reseller's get",
    );
    code(
        stranger
            .library()
            .list_media_tracks(pb::ListMediaTracksRequest {
                customer_id: customer.id.clone(),
                ..Default::default()
            })
            .await,
        Code::NotFound,
        "another reseller's list",
    );
    code(
        stranger
            .library()
            .delete_media_track(pb::DeleteMediaTrackRequest {
                id: track.id.clone(),
            })
            .await,
        Code::NotFound,
        "another reseller's delete",
    );

    // Over the quota (1 MB for the customer's one service): refused naming asked and
    // available, and nothing more is stored.
    let long = std::fs::read(mp3(dir.path(), "long.mp3", 330, 70)).expect("mp3");
    assert!(long.len() as u64 > (1 << 20) - tone.len() as u64);
    let refused = code(
        upload_track(&s.admin, &customer.id, "long.mp3", &long).await,
        Code::ResourceExhausted,
        "over the quota",
    );
    let available = (1u64 << 20) - tone.len() as u64;
    assert!(
        refused.message().contains(&format!(
            "asked for {} bytes, {available} bytes available",
            long.len()
        )),
        "{}",
        refused.message()
    );
    assert_eq!(stored_blobs(&s.cp).await, (1, 1));
    assert_eq!(tracks(&s.admin, &customer.id).await.len(), 1);

    // Paging: a second track, one per page.
    let second = upload_track(&s.admin, &customer.id, "again.mp3", &tone)
        .await
        .expect("same bytes again");
    assert_eq!(
        stored_blobs(&s.cp).await,
        (1, 1),
        "the same bytes are stored once"
    );
    let first_page = s
        .admin
        .library()
        .list_media_tracks(pb::ListMediaTracksRequest {
            customer_id: customer.id.clone(),
            page_size: 1,
            ..Default::default()
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(first_page.media_tracks, vec![track.clone()]);
    let next = s
        .admin
        .library()
        .list_media_tracks(pb::ListMediaTracksRequest {
            customer_id: customer.id.clone(),
            page_size: 1,
            page_token: first_page.next_page_token,
        })
        .await
        .expect("page")
        .into_inner();
    assert_eq!(next.media_tracks, vec![second.clone()]);

    // Delete: the bytes go once nothing names them.
    for t in [&track, &second] {
        s.admin
            .library()
            .delete_media_track(pb::DeleteMediaTrackRequest { id: t.id.clone() })
            .await
            .expect("delete");
    }
    assert!(tracks(&s.admin, &customer.id).await.is_empty());
    code(
        s.admin
            .library()
            .get_media_track(pb::GetMediaTrackRequest {
                id: track.id.clone(),
            })
            .await,
        Code::NotFound,
        "a deleted track",
    );
    assert_eq!(stored_blobs(&s.cp).await, (0, 0));
    agent.shutdown().await;
}

async fn bad_and_interrupted_uploads_keep_nothing_and_a_retry_works(backend: Backend) {
    let (s, agent, customer) = customer_with_quota(backend, 50).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 3)).expect("mp3");
    let video = std::fs::read(mp4(dir.path(), "clip.mp4", 1)).expect("mp4");
    let keeps_nothing = |what: &'static str| {
        let s = &s;
        let customer = &customer;
        async move {
            assert_eq!(stored_blobs(&s.cp).await, (0, 0), "{what}: nothing stored");
            assert!(
                tracks(&s.admin, &customer.id).await.is_empty(),
                "{what}: nothing listed"
            );
            assert!(
                spooled_files(&s.cp).is_empty(),
                "{what}: nothing spooled: {:?}",
                spooled_files(&s.cp)
            );
        }
    };

    // Not audio: text, and a video.
    let status = code(
        upload_track(
            &s.admin,
            &customer.id,
            "song.mp3",
            b"this is not audio at all",
        )
        .await,
        Code::InvalidArgument,
        "text",
    );
    assert!(
        status.message().contains("not audio"),
        "{}",
        status.message()
    );
    let status = code(
        upload_track(&s.admin, &customer.id, "clip.mp4", &video).await,
        Code::InvalidArgument,
        "a video as a track",
    );
    assert!(
        status.message().contains("video stream"),
        "{}",
        status.message()
    );
    keeps_nothing("not audio").await;

    // The checksum must match.
    let mut wrong = header("tone.mp3", &tone);
    wrong.sha256 = sha256_hex(b"other bytes");
    let messages = track_messages(&customer.id, wrong, vec![tone.clone()]);
    let status = code(
        s.admin
            .library()
            .upload_media_track(futures::stream::iter(messages))
            .await,
        Code::InvalidArgument,
        "checksum mismatch",
    );
    assert!(status.message().contains("hash to"), "{}", status.message());
    keeps_nothing("checksum").await;

    // Hostile names: directories are dropped, control characters and long names refused.
    let stripped = upload_track(&s.admin, &customer.id, "../../etc/passwd", &tone)
        .await
        .expect("a path as name");
    assert_eq!(stripped.display_name, "passwd");
    for name in ["bell\u{7}.mp3", "line\nbreak.mp3", "", "dir/", ".."] {
        code(
            upload_track(&s.admin, &customer.id, name, &tone).await,
            Code::InvalidArgument,
            name,
        );
    }
    let long_name = format!("{}.mp3", "é".repeat(130));
    let status = code(
        upload_track(&s.admin, &customer.id, &long_name, &tone).await,
        Code::InvalidArgument,
        "256+ bytes",
    );
    assert!(
        status.message().contains("255 bytes"),
        "{}",
        status.message()
    );
    s.admin
        .library()
        .delete_media_track(pb::DeleteMediaTrackRequest { id: stripped.id })
        .await
        .expect("delete");
    keeps_nothing("names").await;

    // A stream that ends early, and one whose first message is not the header.
    let half = tone[..tone.len() / 2].to_vec();
    let messages = track_messages(&customer.id, header("tone.mp3", &tone), vec![half.clone()]);
    let status = code(
        s.admin
            .library()
            .upload_media_track(futures::stream::iter(messages))
            .await,
        Code::InvalidArgument,
        "a short upload",
    );
    assert!(
        status.message().contains("nothing was kept"),
        "{}",
        status.message()
    );
    let chunk_first = vec![pb::UploadMediaTrackRequest {
        body: Some(pb::upload_media_track_request::Body::Chunk(half.clone())),
    }];
    code(
        s.admin
            .library()
            .upload_media_track(futures::stream::iter(chunk_first))
            .await,
        Code::InvalidArgument,
        "no header",
    );
    keeps_nothing("short").await;

    // Interrupted: the client goes away with half the file sent.
    let messages = track_messages(&customer.id, header("tone.mp3", &tone), vec![half]);
    let client = s.admin.clone();
    let call = tokio::spawn(async move {
        use futures::StreamExt;
        let stream = futures::stream::iter(messages).chain(futures::stream::pending());
        client.library().upload_media_track(stream).await
    });
    wait_for("the upload to be spooling", LONG, || {
        let files = spooled_files(&s.cp);
        async move { (!files.is_empty()).then_some(()) }
    })
    .await;
    call.abort();
    wait_for("the interrupted upload's spool file to go", LONG, || {
        let files = spooled_files(&s.cp);
        async move { files.is_empty().then_some(()) }
    })
    .await;
    keeps_nothing("interrupted").await;

    // The retry works.
    let track = upload_track(&s.admin, &customer.id, "tone.mp3", &tone)
        .await
        .expect("retry");
    assert_eq!(tracks(&s.admin, &customer.id).await, vec![track]);
    assert_eq!(stored_blobs(&s.cp).await, (1, 1));
    agent.shutdown().await;
}

/// Waits until `dir` holds exactly the managed files `names` (others, put there by hand, are
/// not the agent's).
async fn library_holds(dir: std::path::PathBuf, names: Vec<String>, what: &str) {
    let mut names = names;
    names.sort();
    wait_for(what, LONG, || {
        let dir = dir.clone();
        let names = names.clone();
        async move {
            let mut found: Vec<String> = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .filter(|n| n.starts_with("trk_"))
                        .collect()
                })
                .unwrap_or_default();
            found.sort();
            (found == names).then_some(())
        }
    })
    .await;
}

fn file_name(track: &pb::MediaTrack) -> String {
    format!("{}.{}", track.id, track.format)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn autodj_plays_an_upload_on_a_node_that_never_had_it_and_follows_deletes_and_owners() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 4).await;
    let first_agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let (first, last) = free_port_range(4);
    let (second_node, second_token) = s.admin.create_node("second-host", first, last).await;
    let second_agent = AgentHandle::join_and_start(&s.cp, &second_token).await;
    wait_online(&s.admin, &second_node.id).await;
    let reseller_id = s.admin.customer(&s.owner).await.reseller_id;
    let owner = s.admin.create_customer(&reseller_id, "Track Owner").await;
    let newcomer = s.admin.create_customer(&reseller_id, "New Owner").await;
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 20)).expect("mp3");
    let other = std::fs::read(mp3(dir.path(), "other.mp3", 660, 20)).expect("mp3");

    let autodj = |customer: &str, name: &str, node: &str| {
        let mut request = icecast_request(customer, name, 10);
        let service = request.media_service.as_mut().expect("service");
        service.autodj = true;
        service.node_id = node.to_owned();
        request
    };
    // The owner's library is first uploaded while its only AutoDJ service is on the first node.
    s.admin
        .media()
        .create_media_service(autodj(&owner.id, "first-fm", &s.node.id))
        .await
        .expect("create");
    let track = upload_track(&s.admin, &owner.id, "tone.mp3", &tone)
        .await
        .expect("upload");
    let first_library = first_agent.data_dir().join("media").join(&owner.id);
    library_holds(
        first_library.clone(),
        vec![file_name(&track)],
        "the track on the first node",
    )
    .await;
    let second_library = second_agent.data_dir().join("media").join(&owner.id);
    assert!(
        !second_library.join(file_name(&track)).exists(),
        "the second node never had it"
    );

    // A service on the second node: its agent fetches the library and AutoDJ plays it.
    let service = s
        .admin
        .media()
        .create_media_service(autodj(&owner.id, "second-fm", &second_node.id))
        .await
        .expect("create")
        .into_inner();
    library_holds(
        second_library.clone(),
        vec![file_name(&track)],
        "the track fetched by the second node",
    )
    .await;
    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let http = castplane_integration_tests::fleet::http_port(&service);
    let body = wait_for_stream(http, "/live", 32 * 1024, LONG)
        .await
        .expect("AutoDJ on /live");
    assert!(looks_like_mp3(&body));
    let dj = liquidsoap_pid(second_agent.data_dir(), &service.id).expect("AutoDJ running");

    // A second upload and a delete reach both nodes without restarting AutoDJ.
    let another = upload_track(&s.admin, &owner.id, "other.mp3", &other)
        .await
        .expect("upload");
    library_holds(
        second_library.clone(),
        vec![file_name(&track), file_name(&another)],
        "the new track",
    )
    .await;
    library_holds(
        first_library.clone(),
        vec![file_name(&track), file_name(&another)],
        "the new track on the first node",
    )
    .await;
    s.admin
        .library()
        .delete_media_track(pb::DeleteMediaTrackRequest {
            id: track.id.clone(),
        })
        .await
        .expect("delete");
    library_holds(
        second_library.clone(),
        vec![file_name(&another)],
        "the deletion",
    )
    .await;
    library_holds(
        first_library.clone(),
        vec![file_name(&another)],
        "the deletion on the first node",
    )
    .await;
    assert_eq!(
        liquidsoap_pid(second_agent.data_dir(), &service.id),
        Some(dj),
        "AutoDJ kept running"
    );

    // A change of owner: the service plays the new owner's library; the old owner's tracks
    // stay the old owner's (in the store, and on the first node, where it still has AutoDJ).
    let theirs = upload_track(&s.admin, &newcomer.id, "theirs.mp3", &tone);
    // The newcomer has no quota yet: it gets the service first.
    code(
        theirs.await,
        Code::ResourceExhausted,
        "no services, no quota",
    );
    s.admin
        .media()
        .change_media_service_owner(pb::ChangeMediaServiceOwnerRequest {
            id: service.id.clone(),
            new_customer_id: newcomer.id.clone(),
        })
        .await
        .expect("change owner");
    let theirs = upload_track(&s.admin, &newcomer.id, "theirs.mp3", &tone)
        .await
        .expect("upload");
    let new_library = second_agent.data_dir().join("media").join(&newcomer.id);
    library_holds(
        new_library,
        vec![file_name(&theirs)],
        "the new owner's library on the second node",
    )
    .await;
    library_holds(
        second_library,
        vec![],
        "the old owner's tracks leave the second node",
    )
    .await;
    library_holds(
        first_library,
        vec![file_name(&another)],
        "the old owner keeps its library",
    )
    .await;
    assert_eq!(tracks(&s.admin, &owner.id).await, vec![another]);
    wait_for("AutoDJ to play the new owner's library", LONG, || {
        let data_dir = second_agent.data_dir().to_owned();
        let id = service.id.clone();
        let library = format!("media/{}", newcomer.id);
        async move {
            let script =
                std::fs::read_to_string(data_dir.join("services").join(&id).join("autodj.liq"))
                    .ok()?;
            (script.contains(&library) && liquidsoap_pid(&data_dir, &id).is_some()).then_some(())
        }
    })
    .await;
    let body = wait_for_stream(http, "/live", 32 * 1024, LONG)
        .await
        .expect("AutoDJ on /live");
    assert!(looks_like_mp3(&body));
    first_agent.shutdown().await;
    second_agent.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploaded_video_plays_over_http_and_a_confirmed_delete_destroys_it() {
    let (s, token) = setup(Backend::Sqlite, ServiceConfig::default(), 4).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let service = create_video_service(&s.admin, &s.owner, "clips-tv", 5).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let clip = std::fs::read(mp4(dir.path(), "clip.mp4", 2)).expect("mp4");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 2)).expect("mp3");

    let status = code(
        upload_video(&s.admin, &service.id, "tone.mp3", &tone).await,
        Code::InvalidArgument,
        "audio as video",
    );
    assert!(
        status.message().contains("no video stream"),
        "{}",
        status.message()
    );
    let video = upload_video(&s.admin, &service.id, "Holiday Clip.mp4", &clip)
        .await
        .expect("upload");
    assert_eq!(video.display_name, "Holiday Clip.mp4");
    let http = castplane_integration_tests::fleet::http_port(&service);
    assert_eq!(
        video.url,
        format!("http://127.0.0.1:{http}/videos/{}.mp4", video.id)
    );
    let listed = s
        .admin
        .library()
        .list_video_files(pb::ListVideoFilesRequest {
            media_service_id: service.id.clone(),
            ..Default::default()
        })
        .await
        .expect("list")
        .into_inner()
        .video_files;
    assert_eq!(listed, vec![video.clone()]);

    succeeded(&s.admin, &start(&s.admin, &service.id).await.id).await;
    let path = format!("/videos/{}.mp4", video.id);
    let served = wait_for("the video to be served", LONG, || {
        let path = path.clone();
        let want = clip.len();
        async move {
            tokio::task::spawn_blocking(move || {
                read_stream(http, &path, want, Duration::from_secs(5))
            })
            .await
            .ok()
            .flatten()
        }
    })
    .await;
    assert_eq!(served, clip, "the node serves the uploaded bytes");

    // Over the service's own quota (5 MB).
    let big = vec![0u8; 6 << 20];
    code(
        upload_video(&s.admin, &service.id, "big.mp4", &big).await,
        Code::ResourceExhausted,
        "over the service's quota",
    );

    // The dry run names the file; the confirmed delete destroys it everywhere.
    let plan = s
        .admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            validate_only: true,
            ..Default::default()
        })
        .await
        .expect("dry run")
        .into_inner()
        .plan
        .expect("plan");
    assert!(
        plan.destroyed
            .iter()
            .any(|d| d.contains("\"Holiday Clip.mp4\"")),
        "{:?}",
        plan.destroyed
    );
    let deleted = s
        .admin
        .media()
        .delete_media_service(pb::DeleteMediaServiceRequest {
            id: service.id.clone(),
            confirm_permanent_deletion: true,
            ..Default::default()
        })
        .await
        .expect("delete")
        .into_inner();
    succeeded(&s.admin, &deleted.action.expect("action").id).await;
    assert!(!agent.data_dir().join("services").join(&service.id).exists());
    assert_eq!(
        stored_blobs(&s.cp).await,
        (0, 0),
        "the store let go of the video"
    );
    agent.shutdown().await;
}

/// DESIGN: deleting a customer permanently deletes its media library — not only its records:
/// the bytes in the store and every node's copy.
async fn a_forced_customer_delete_destroys_its_tracks_in_the_store_and_on_the_nodes(
    backend: Backend,
) {
    let (s, token) = setup(backend, ServiceConfig::default(), 4).await;
    let agent = AgentHandle::join_and_start(&s.cp, &token).await;
    wait_online(&s.admin, &s.node.id).await;
    let reseller_id = s.admin.customer(&s.owner).await.reseller_id;
    let customer = s
        .admin
        .create_customer(&reseller_id, "Leaving Library")
        .await;
    let mut request = icecast_request(&customer.id, "leaving-fm", 10);
    let service = request.media_service.as_mut().expect("service");
    service.autodj = true;
    service.disk_quota_mb = 10;
    let service = s
        .admin
        .media()
        .create_media_service(request)
        .await
        .expect("create")
        .into_inner();
    let dir = tempfile::tempdir().expect("tempdir");
    let tone = std::fs::read(mp3(dir.path(), "tone.mp3", 440, 3)).expect("mp3");
    let track = upload_track(&s.admin, &customer.id, "tone.mp3", &tone)
        .await
        .expect("upload");
    let library = agent.data_dir().join("media").join(&customer.id);
    library_holds(
        library.clone(),
        vec![file_name(&track)],
        "the track on the node",
    )
    .await;
    assert_eq!(stored_blobs(&s.cp).await.0, 1, "the track's blob is stored");

    let delete = |validate_only: bool| {
        let mut accounts = s.admin.accounts();
        let request = pb::DeleteCustomerRequest {
            id: customer.id.clone(),
            force: true,
            confirm_permanent_deletion: false,
            validate_only,
        };
        async move { accounts.delete_customer(request).await }
    };
    let plan = delete(true)
        .await
        .expect("dry run")
        .into_inner()
        .plan
        .expect("a plan");
    assert!(
        plan.destroyed.iter().any(|d| d.contains("media library")),
        "the dry run names the library: {plan:?}"
    );
    assert_eq!(plan.media_service_ids, vec![service.id.clone()]);
    assert_eq!(
        tracks(&s.admin, &customer.id).await.len(),
        1,
        "a dry run keeps it"
    );

    let response = delete(false).await.expect("forced delete").into_inner();
    assert_eq!(response.actions.len(), 1, "the service's delete is queued");
    wait_for(
        "the customer to go once its service is deleted",
        LONG,
        || {
            let admin = s.admin.clone();
            let id = customer.id.clone();
            async move {
                let gone = admin
                    .accounts()
                    .get_customer(pb::GetCustomerRequest { id })
                    .await
                    .is_err_and(|status| status.code() == Code::NotFound);
                gone.then_some(())
            }
        },
    )
    .await;
    assert_eq!(
        stored_blobs(&s.cp).await,
        (0, 0),
        "no byte of the library is kept"
    );
    code(
        s.admin
            .library()
            .get_media_track(pb::GetMediaTrackRequest {
                id: track.id.clone(),
            })
            .await,
        Code::NotFound,
        "the deleted customer's track",
    );
    library_holds(library, vec![], "the node's copy to go").await;
    agent.shutdown().await;
}
