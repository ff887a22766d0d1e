use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use fleet_lab::TestLab;
use fleet_remote_exec::{ExecOptions, ExitStatus};
use tokio_util::sync::CancellationToken;

use crate::connect;

#[tokio::test(flavor = "multi_thread")]
async fn upload_is_complete_atomic_and_has_the_mode() {
    let lab = TestLab::start(1);
    let host = &lab.hosts()[0];
    let s = connect(&lab, host).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let local = dir.path().join("release.tar.gz");
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&local, &data).expect("write");
    let dest = host.root.join("civicrm release.tar.gz");
    let opts = ExecOptions {
        timeout: Duration::from_secs(60),
        max_output: 4096,
    };
    let out = s
        .upload(
            &local,
            dest.to_str().expect("utf8"),
            0o640,
            &[],
            &opts,
            &CancellationToken::new(),
        )
        .await
        .expect("upload");
    assert_eq!(
        out.status,
        ExitStatus::Code(0),
        "{}",
        out.stderr.to_string_lossy()
    );
    assert_eq!(std::fs::read(&dest).expect("read back"), data);
    let mode = std::fs::metadata(&dest).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);
    let leftovers: Vec<_> = std::fs::read_dir(&host.root)
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| e.file_name().to_string_lossy().starts_with(".fleet-upload"))
        .collect();
    assert!(leftovers.is_empty());

    // A missing destination directory is a remote failure with a reason, not a hang.
    let out = s
        .upload(
            &local,
            host.root.join("missing/x").to_str().expect("utf8"),
            0o600,
            &[],
            &opts,
            &CancellationToken::new(),
        )
        .await
        .expect("upload");
    assert!(!out.status.success());
    assert!(!out.stderr.is_empty());
}
