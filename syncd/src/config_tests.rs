use super::*;

fn resolve(sources: Sources) -> Result<Config, ConfigError> {
    Config::resolve(
        "127.0.0.1:0".parse().unwrap(),
        &sources,
        PollSettings::default(),
    )
}

fn base_urls(v: &str) -> Result<Config, ConfigError> {
    resolve(Sources {
        base_urls: Some(v.into()),
        ..Sources::default()
    })
}

#[test]
fn base_urls_are_split_trimmed_and_named_like_open_webui() {
    let c = base_urls(
        " http://10.0.0.5:11434/ ;; http://gpu-a:11434;  ;http://ollama.example.com:443/",
    )
    .unwrap();
    let got: Vec<_> = c
        .instances
        .iter()
        .map(|i| {
            (
                i.name.as_str(),
                i.url.as_str(),
                i.cluster.as_str(),
                i.authority.as_str(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "10.0.0.5_11434",
                "http://10.0.0.5:11434",
                "10.0.0.5_11434",
                "10.0.0.5:11434"
            ),
            (
                "gpu-a_11434",
                "http://gpu-a:11434",
                "gpu-a_11434",
                "gpu-a:11434"
            ),
            (
                "ollama.example.com_443",
                "http://ollama.example.com:443",
                "ollama.example.com_443",
                "ollama.example.com:443"
            ),
        ]
    );
}

#[test]
fn http_without_port_means_ollamas_port() {
    let c = base_urls("http://gpu-b;http://proxy:8080/").unwrap();
    assert_eq!(c.instances[0].url, "http://gpu-b:11434");
    assert_eq!(c.instances[0].name, "gpu-b_11434");
    assert_eq!(c.instances[1].url, "http://proxy:8080");
    let c = base_urls("http://h:80;https://s:8443/;HTTP://UPPER:1;https://t").unwrap();
    let urls: Vec<_> = c.instances.iter().map(|i| i.url.as_str()).collect();
    assert_eq!(
        urls,
        [
            "http://h:80",
            "https://s:8443",
            "http://upper:1",
            "https://t:443"
        ]
    );
    assert_eq!(
        c.instances[0].name, "h_80",
        "an explicit default port is kept"
    );
    assert!(base_urls("http://u:p@h:1").is_err(), "credentials");
}

#[test]
fn ipv6_names_start_alphanumeric() {
    assert_eq!(derive_name("[::1]:11434"), "1__11434");
    let c = base_urls("http://[::1]:11434").unwrap();
    assert_eq!(c.instances[0].authority, "[::1]:11434");
}

#[test]
fn bad_urls_name_the_value_and_the_fix() {
    for (value, hint) in [
        ("10.0.0.5:11434", "http://HOST:PORT"),
        ("gpu-a:11434", "scheme"),
        ("gpu-a", "http://HOST:PORT"),
        ("ftp://x:1", "use http:// or https://"),
        ("http://proxy:8080/ollama", "path prefix (/ollama)"),
        ("http://x:1/?a=b", "query"),
    ] {
        let err = base_urls(value).unwrap_err().to_string();
        assert!(err.contains(value), "{err}");
        assert!(err.contains(hint), "{value}: {err}");
    }
    assert!(matches!(base_urls(" ; ;"), Err(ConfigError::NoInstances)));
    assert!(matches!(
        resolve(Sources::default()),
        Err(ConfigError::NoInstances)
    ));
}

#[test]
fn instance_flags_take_names_or_derive_them() {
    let c = resolve(Sources {
        instance_flags: vec![
            "gpu-a=http://10.0.0.5:11434".into(),
            "http://10.0.0.6".into(),
        ],
        ..Sources::default()
    })
    .unwrap();
    assert_eq!(c.instances[0].name, "gpu-a");
    assert_eq!(c.instances[1].name, "10.0.0.6_11434");
    let err = resolve(Sources {
        instance_flags: vec!["-bad=http://x:1".into()],
        ..Sources::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("\"-bad\"") && err.contains("start with a letter"),
        "{err}"
    );
    let long = format!("{}=http://x:1", "a".repeat(61));
    assert!(resolve(Sources {
        instance_flags: vec![long],
        ..Sources::default()
    })
    .is_err());
}

#[test]
fn duplicates_are_rejected_naming_both_places() {
    let err = resolve(Sources {
        instance_flags: vec!["a=http://x:1".into(), "a=http://y:1".into()],
        ..Sources::default()
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("instance name \"a\" is used twice"), "{err}");
    let err = base_urls("http://x:11434;http://x")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("used twice") && err.contains("entry 2"),
        "{err}"
    );
}

#[test]
fn toml_file_gives_names_clusters_and_lines() {
    let path = Path::new("fleet.toml");
    let text = "[[instance]]\nname = \"gpu-a\"\nurl = \"http://10.0.0.5:11434\"\ncluster = \"ollama_gpu_a\"\n\n[[instance]]\nurl = \"http://10.0.0.6:11434\"\n";
    let found = parse_file(path, text).unwrap();
    assert_eq!(found[0].0.cluster, "ollama_gpu_a");
    assert_eq!(found[1].0.name, "10.0.0.6_11434");
    assert_eq!(found[1].0.cluster, "10.0.0.6_11434");

    let bad_url = "[[instance]]\nname = \"a\"\n\n[[instance]]\nurl = \"gopher://x\"\n";
    let err = parse_file(path, bad_url).unwrap_err();
    assert!(
        matches!(err, ConfigError::Toml { line: 1, .. }),
        "missing url: {err}"
    );
    let bad_url =
        "[[instance]]\nname = \"a\"\nurl = \"http://x:1\"\n\n[[instance]]\nurl = \"gopher://x\"\n";
    let err = parse_file(path, bad_url).unwrap_err().to_string();
    assert!(
        err.contains("fleet.toml, line 6") && err.contains("gopher"),
        "{err}"
    );

    let typo = "[[instance]]\nurl = \"http://x:1\"\nclustr = \"c\"\n";
    match parse_file(path, typo).unwrap_err() {
        ConfigError::Toml { line, message, .. } => {
            assert_eq!(line, 3);
            assert!(message.contains("clustr"), "{message}");
        }
        other => panic!("{other}"),
    }
    let syntax = "[[instance]]\nurl = \"http://x:1\n";
    assert!(matches!(
        parse_file(path, syntax).unwrap_err(),
        ConfigError::Toml { line: 2, .. }
    ));
}

#[test]
fn poll_settings_are_checked() {
    let sources = Sources {
        base_urls: Some("http://x:1".into()),
        ..Sources::default()
    };
    let listen = "127.0.0.1:0".parse().unwrap();
    let slow = PollSettings {
        timeout: Duration::from_secs(2),
        ..PollSettings::default()
    };
    let err = Config::resolve(listen, &sources, slow)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("--timeout") && err.contains("--interval"),
        "{err}"
    );
    let zero = PollSettings {
        max_response_bytes: 0,
        ..PollSettings::default()
    };
    assert!(Config::resolve(listen, &sources, zero).is_err());
}

#[test]
fn file_instances_take_a_ca_file_and_a_bearer_token_from_the_environment() {
    let dir = std::env::temp_dir().join(format!("syncd-config-ca-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let not_pem = dir.join("not.pem");
    std::fs::write(&not_pem, "hello").unwrap();
    let path = Path::new("fleet.toml");
    // PATH is set in every test process: it stands in for a token.
    let text = format!(
        "[[instance]]\nname = \"a\"\nurl = \"https://ollama.example\"\nca_file = {:?}\nbearer_token_env = \"PATH\"\n",
        ca.display().to_string()
    );
    let found = parse_file(path, &text).unwrap();
    let a = &found[0].0;
    assert_eq!(a.url, "https://ollama.example:443");
    assert_eq!(a.access.ca_file.as_deref(), Some(ca.as_path()));
    assert!(a.access.ca_pem.is_some());
    let token = std::env::var("PATH").unwrap();
    assert_eq!(
        a.access.bearer_token.as_ref().map(Secret::expose),
        Some(token.trim())
    );
    let shown = format!("{a:?} {}", serde_json::to_string(a).unwrap());
    assert!(!shown.contains(token.trim()), "the token leaked: {shown}");
    assert!(shown.contains("\"bearer_token_env\":\"PATH\""), "{shown}");

    for (toml, wanted) in [
        (
            "url = \"https://x\"\nbearer_token_env = \"OLLAMA_LB_SURELY_UNSET_VAR\"".to_string(),
            "set the environment variable OLLAMA_LB_SURELY_UNSET_VAR",
        ),
        (
            format!(
                "url = \"http://x\"\nca_file = {:?}",
                ca.display().to_string()
            ),
            "https:// instances only",
        ),
        (
            format!(
                "url = \"https://x\"\nca_file = {:?}",
                not_pem.display().to_string()
            ),
            "at least one CERTIFICATE",
        ),
        (
            "url = \"https://x\"\nca_file = \"/nonexistent/ca.pem\"".to_string(),
            "cannot be read",
        ),
    ] {
        let err = parse_file(path, &format!("[[instance]]\n{toml}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(wanted) && err.contains("line 2"), "{err}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
