//! The AxeOS client's behaviour on the wire, against raw TCP servers that record what they
//! receive: no `Origin` header, redirects not followed, bodies over 1 MiB refused, a
//! timeout that ends a hung request.

use std::time::{Duration, Instant};

use bitaxe_exporter::axeos::window::{CheckedPatch, SettingsWindow};
use bitaxe_exporter::axeos::{AxeOsClient, PollError, PollErrorKind, SettingsPatch};
use bitaxe_exporter::config::MinerAddress;
use tokio::net::TcpListener;

use crate::support::raw_server;

fn client() -> AxeOsClient {
    AxeOsClient::new(Duration::from_millis(800), Duration::ZERO).unwrap()
}

#[tokio::test]
async fn sends_no_origin_and_does_not_follow_redirects() {
    // A healthy miner the redirect points at: following it would make the poll succeed.
    let body = crate::support::local_fixture("v2.15.0-gamma-601.json");
    let mut ok = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    ok.extend_from_slice(&body);
    let (target, _) = raw_server(ok).await;
    let redirect =
        format!("HTTP/1.1 302 Found\r\nLocation: http://{target}/api/system/info\r\nContent-Length: 0\r\n\r\n");
    let (address, mut requests) = raw_server(redirect.into_bytes()).await;

    let error = client().system_info(&address).await.unwrap_err();
    assert_eq!(error.kind(), PollErrorKind::HttpStatus);
    assert!(matches!(error, PollError::HttpStatus { status: 302, .. }), "{error}");
    assert!(
        error.to_string().contains("redirect"),
        "the message explains the redirect: {error}"
    );

    let head = requests.recv().await.unwrap().to_ascii_lowercase();
    assert!(head.starts_with("get /api/system/info http/1.1"), "{head}");
    assert!(!head.contains("\norigin:"), "an Origin header was sent:\n{head}");

    // The same client polls the healthy one fine.
    let sample = client().system_info(&target).await.unwrap();
    assert_eq!(sample.identity.firmware.as_deref(), Some("v2.15.0"));
}

#[tokio::test]
async fn refuses_bodies_over_one_mebibyte_even_without_a_length() {
    let mut response = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n".to_vec();
    response.extend(std::iter::repeat_n(b' ', 1024 * 1024 + 10));
    let (address, _) = raw_server(response).await;
    let error = client().system_info(&address).await.unwrap_err();
    assert_eq!(error, PollError::TooLarge);
    assert_eq!(error.kind(), PollErrorKind::Decode);
}

#[tokio::test]
async fn a_hung_miner_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = MinerAddress::new("127.0.0.1", listener.local_addr().unwrap().port());
    // Accepts and never answers.
    let _holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let started = Instant::now();
    let error = client().system_info(&address).await.unwrap_err();
    assert_eq!(error.kind(), PollErrorKind::Timeout, "{error}");
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn patch_sends_only_the_given_settings() {
    let (address, mut requests) = raw_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_vec()).await;
    let patch = SettingsPatch {
        frequency: Some(562.5),
        core_voltage: Some(1150),
    };
    let checked = SettingsWindow::for_miner(Some("BM1370"), None).check(&patch).unwrap();
    client().patch_settings(&address, &checked).await.unwrap();
    let head = requests.recv().await.unwrap();
    assert!(head.starts_with("PATCH /api/system HTTP/1.1"), "{head}");
    assert!(head.to_ascii_lowercase().contains("content-type: application/json"));
    // Nothing at all is sent for an empty patch.
    client()
        .patch_settings(&address, &CheckedPatch::forced(SettingsPatch::default()))
        .await
        .unwrap();
    assert!(requests.try_recv().is_err());

    let timeout = AxeOsClient::timeout_for(Duration::from_secs(1));
    assert!(
        timeout < Duration::from_secs(1),
        "the timeout is below the poll interval"
    );
    assert_eq!(
        AxeOsClient::timeout_for(Duration::from_secs(60)),
        Duration::from_secs(5)
    );
}

#[tokio::test]
async fn an_answer_that_is_not_http_is_a_protocol_error() {
    // Headers larger than any client buffers (1 MiB of one header line).
    let oversized = [
        &b"HTTP/1.1 200 OK\r\nX-Padding: "[..],
        &vec![b'a'; 1 << 20],
        b"\r\nContent-Length: 2\r\n\r\n{}",
    ]
    .concat();
    for garbage in [
        &b"HELLO THERE\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n",
        &oversized,
    ] {
        let (address, _requests) = raw_server(garbage.to_vec()).await;
        let error = client().system_info(&address).await.unwrap_err();
        let shown = String::from_utf8_lossy(&garbage[..garbage.len().min(60)]);
        assert_eq!(error.kind(), PollErrorKind::Protocol, "{shown}: {error}");
    }
}
