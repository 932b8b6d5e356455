//! Config parsing: defaults, fallbacks, and errors that name their setting.
use super::*;

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let mut argv = vec!["switchboard"];
    argv.extend_from_slice(args);
    let cli = Cli::try_parse_from(argv).expect("clap accepts the flags");
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Config::from_cli(cli, &move |name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })
}

#[test]
fn defaults_are_embedded_offline_on_8080() {
    let c = parse(&[], &[]).unwrap();
    assert_eq!(c.bind.to_string(), "127.0.0.1:8080");
    assert_eq!(c.mode(), "embedded");
    assert!(!c.upstream_configured());
    assert_eq!(c.openai_base_url, DEFAULT_OPENAI_BASE_URL);
}

#[test]
fn port_falls_back_to_port_and_flag_wins() {
    assert_eq!(parse(&[], &[("PORT", "9000")]).unwrap().bind.port(), 9000);
    let c = parse(&["--port", "9001"], &[("PORT", "9000")]).unwrap();
    assert_eq!(c.bind.port(), 9001);
}

#[test]
fn bad_values_name_their_setting() {
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (&[], &[("PORT", "eighty")], "PORT"),
        (&["--port", "70000"], &[], "SWITCHBOARD_PORT"),
        (&["--key-ttl", "5s"], &[], "SWITCHBOARD_KEY_TTL"),
        (&["--key-ttl", "soon"], &[], "SWITCHBOARD_KEY_TTL"),
        (
            &[],
            &[("OPENAI_BASE_URL", "ftp://x")],
            "SWITCHBOARD_OPENAI_BASE_URL",
        ),
        (
            &[],
            &[("REDIS_URL", "localhost:6379")],
            "SWITCHBOARD_REDIS_URL",
        ),
        (
            &[],
            &[("REDIS_URL", "redis://127.0.0.1:6379")],
            "SWITCHBOARD_SESSION_SECRET",
        ),
        (
            &["--session-secret", "short"],
            &[],
            "SWITCHBOARD_SESSION_SECRET",
        ),
        (&["--body-limit", "lots"], &[], "SWITCHBOARD_BODY_LIMIT"),
        (&["--log-format", "xml"], &[], "SWITCHBOARD_LOG_FORMAT"),
        (
            &["--cors-origins", "not an origin"],
            &[],
            "SWITCHBOARD_CORS_ORIGINS",
        ),
        (
            &["--scenarios-dir", "/no/such/dir"],
            &[],
            "SWITCHBOARD_SCENARIOS_DIR",
        ),
        (&["--host", "localhost:1"], &[], "SWITCHBOARD_HOST"),
        (&["--history-size", "0"], &[], "SWITCHBOARD_HISTORY_SIZE"),
        (&["--heartbeat", "0s"], &[], "SWITCHBOARD_HEARTBEAT"),
        (
            &["--session-ttl", "30s", "--heartbeat", "25s"],
            &[],
            "SWITCHBOARD_SESSION_TTL",
        ),
        (&["--max-frame", "12"], &[], "SWITCHBOARD_MAX_FRAME"),
        (&["--conn-queue", "none"], &[], "SWITCHBOARD_CONN_QUEUE"),
        (
            &["--redis-publish-batch", "0"],
            &[],
            "SWITCHBOARD_REDIS_PUBLISH_BATCH",
        ),
        (
            &["--redis-publish-batch", "1000"],
            &[],
            "SWITCHBOARD_REDIS_PUBLISH_BATCH",
        ),
        (
            &["--moderation", "local,magic"],
            &[],
            "SWITCHBOARD_MODERATION",
        ),
        (
            &["--moderation-fail", "maybe"],
            &[],
            "SWITCHBOARD_MODERATION_FAIL",
        ),
    ];
    for (args, env, setting) in cases {
        let err = parse(args, env).expect_err(setting);
        assert_eq!(err.setting, *setting, "{err}");
        assert!(err.to_string().contains(setting));
    }
    // The session TTL refusal names the heartbeat too, so the fix is obvious.
    let err = parse(&["--session-ttl", "30s", "--heartbeat", "25s"], &[]).unwrap_err();
    assert!(err.to_string().contains("SWITCHBOARD_HEARTBEAT"), "{err}");
    assert!(parse(&["--session-ttl", "50s", "--heartbeat", "25s"], &[]).is_ok());
}

#[test]
fn unprefixed_fallbacks_are_honoured() {
    let c = parse(
        &[],
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/"),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
        ],
    );
    let err = c.expect_err("redis mode needs a secret");
    assert_eq!(err.setting, "SWITCHBOARD_SESSION_SECRET");
    let c = parse(
        &["--session-secret", &"s".repeat(32)],
        &[
            ("OPENAI_API_KEY", "sk-test"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:1/v1/"),
        ],
    )
    .unwrap();
    assert!(c.upstream_configured());
    assert_eq!(c.openai_base_url, "http://127.0.0.1:1/v1");
}

#[test]
fn access_settings_parse_and_default_by_mode() {
    let c = parse(&[], &[]).unwrap();
    assert!(c.allow_anonymous(), "embedded mode is open by default");
    assert_eq!(c.access.rate_ip.unwrap().count.get(), 120);
    assert_eq!(c.access.rate_ip.unwrap().per, Duration::from_secs(60));
    let r = parse(
        &[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--session-secret",
            "0123456789abcdef0123456789abcdef",
            "--api-key",
            " old , new ,,",
            "--rate-limit-ip",
            "off",
            "--rate-limit-user",
            "5/s",
            "--client-ip-header",
            "Fly-Client-IP",
        ],
        &[],
    )
    .unwrap();
    assert!(!r.allow_anonymous(), "Redis mode is closed by default");
    assert_eq!(r.api_keys.len(), 2);
    assert_eq!(r.access.rate_ip, None);
    assert_eq!(r.access.rate_user.unwrap().per, Duration::from_secs(1));
    assert_eq!(r.access.client_ip_header.as_deref(), Some("fly-client-ip"));
    let open = parse(
        &[
            "--redis-url",
            "redis://127.0.0.1:6379",
            "--session-secret",
            "0123456789abcdef0123456789abcdef",
            "--allow-anonymous",
            "true",
        ],
        &[],
    )
    .unwrap();
    assert!(open.allow_anonymous());
    for (args, setting) in [
        (
            &["--allow-anonymous", "maybe"][..],
            "SWITCHBOARD_ALLOW_ANONYMOUS",
        ),
        (
            &["--rate-limit-ip", "many"][..],
            "SWITCHBOARD_RATE_LIMIT_IP",
        ),
        (
            &["--rate-limit-user", "10/fortnight"][..],
            "SWITCHBOARD_RATE_LIMIT_USER",
        ),
        (
            &["--user-jwt-secret", "short"][..],
            "SWITCHBOARD_USER_JWT_SECRET",
        ),
        (
            &["--user-jwks-url", "ftp://x"][..],
            "SWITCHBOARD_USER_JWKS_URL",
        ),
    ] {
        assert_eq!(parse(args, &[]).unwrap_err().setting, setting, "{args:?}");
    }
}
