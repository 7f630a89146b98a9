//! `Profile`: create, load, token file permissions, clear errors.

use std::os::unix::fs::PermissionsExt;

use stacksync_client::{Profile, ProfileConfig, ProfileError, TransportKind};
use stacksync_proto::DeviceId;

fn config(folder: &std::path::Path) -> ProfileConfig {
    ProfileConfig {
        server_url: "http://127.0.0.1:8080".into(),
        email: "ana@example.org".into(),
        device_id: DeviceId::new(),
        device_name: "laptop".into(),
        folder: folder.to_path_buf(),
        transport: TransportKind::Gateway,
        user_id: stacksync_proto::UserId::new(),
        workspace: None,
        direct: None,
        notifications: Default::default(),
    }
}

#[test]
fn create_then_load_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let cfg = config(&dir.path().join("Sync"));
    let created = Profile::create(&home, cfg.clone()).unwrap();
    assert_eq!(
        std::fs::metadata(&home).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let loaded = Profile::load(&home).unwrap();
    assert_eq!(loaded, created);
    assert_eq!(loaded.config, cfg);
    assert_eq!(loaded.state_db_path(), home.join("state.sqlite"));
    assert!(matches!(
        Profile::create(&home, cfg),
        Err(ProfileError::AlreadyExists(_))
    ));
}

#[test]
fn missing_and_broken_profiles_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let err = Profile::load(dir.path()).unwrap_err();
    assert!(matches!(err, ProfileError::NotSetUp(_)));
    assert!(err.to_string().contains("stacksync setup"), "{err}");
    std::fs::write(dir.path().join("profile.toml"), "server_url = 3").unwrap();
    assert!(matches!(
        Profile::load(dir.path()),
        Err(ProfileError::Parse { .. })
    ));
    let mut bad = config(std::path::Path::new("relative/folder"));
    assert!(matches!(
        Profile::create(&dir.path().join("x"), bad.clone()),
        Err(ProfileError::Invalid(_))
    ));
    bad.folder = dir.path().to_path_buf();
    bad.server_url = "ftp://nope".into();
    assert!(matches!(
        Profile::create(&dir.path().join("y"), bad),
        Err(ProfileError::Invalid(_))
    ));
}

#[test]
fn token_is_private_and_refused_when_exposed() {
    let dir = tempfile::tempdir().unwrap();
    let profile = Profile::create(dir.path(), config(dir.path())).unwrap();
    assert_eq!(profile.load_token().unwrap(), None);
    profile.save_token("s3cret").unwrap();
    let path = dir.path().join("session.token");
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(profile.load_token().unwrap().as_deref(), Some("s3cret"));
    let text = std::fs::read_to_string(dir.path().join("profile.toml")).unwrap();
    assert!(
        !text.contains("s3cret"),
        "the token never goes in the profile"
    );
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        profile.load_token(),
        Err(ProfileError::TokenExposed(_))
    ));
    profile.remove_token().unwrap();
    assert_eq!(profile.load_token().unwrap(), None);
    profile.remove_token().unwrap();
}

#[test]
fn notification_settings_round_trip_and_default_to_all_on() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let mut profile = Profile::create(&home, config(&dir.path().join("Sync"))).unwrap();
    assert!(stacksync_client::profile::notification_settings(&home).all_on());
    let text = std::fs::read_to_string(home.join("profile.toml")).unwrap();
    assert!(
        !text.contains("[notifications]"),
        "defaults stay out: {text}"
    );
    profile.config.notifications.conflicts = false;
    profile.save().unwrap();
    let read = stacksync_client::profile::notification_settings(&home);
    assert!(
        !read.conflicts && read.invitations && read.errors,
        "{read:?}"
    );
    assert_eq!(Profile::load(&home).unwrap().config, profile.config);
}
