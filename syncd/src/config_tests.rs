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
    let c = base_urls("http://h:80;http://s:8443/;HTTP://UPPER:1").unwrap();
    let urls: Vec<_> = c.instances.iter().map(|i| i.url.as_str()).collect();
    assert_eq!(urls, ["http://h:80", "http://s:8443", "http://upper:1"]);
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
        ("ftp://x:1", "use http://"),
        ("https://x:443", "not supported yet"),
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
