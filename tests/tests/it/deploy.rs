//! The deployment files agree with the daemon: the ConfigMap's `quell.toml` is a valid
//! configuration whose paths are the ones the Deployment and the image provide.

use quell::config::Config;

use crate::harness::workspace;

/// The block scalar under `  <key>: |` in a ConfigMap, unindented.
fn block(yaml: &str, key: &str) -> String {
    let mut lines = yaml
        .lines()
        .skip_while(|l| l.trim_end() != format!("  {key}: |"));
    lines.next().expect("the key is in the ConfigMap");
    lines
        .take_while(|l| l.is_empty() || l.starts_with("    "))
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_configmap_configuration_parses_and_uses_the_mounted_paths() {
    let dir = workspace().join("deploy");
    let configmap = std::fs::read_to_string(dir.join("kubernetes/configmap.yaml")).unwrap();
    let config = Config::parse(&block(&configmap, "quell.toml")).unwrap();
    assert_eq!(config.server.listen.port(), 8080);
    assert!(config.database.path.starts_with("/var/lib/quell"));
    assert!(config.postmortems.dir.starts_with("/var/lib/quell"));
    assert!(config.sandbox.cache_dir.starts_with("/var/lib/quell"));
    assert_eq!(
        config.runbooks.dir,
        std::path::Path::new("/usr/share/quell/runbooks")
    );
    let kubeconfig = block(&configmap, "kubeconfig");
    assert_eq!(
        config.kubectl.kubeconfig.as_deref(),
        Some(std::path::Path::new("/etc/quell/kubeconfig"))
    );
    assert!(kubeconfig.contains("- name: in-cluster"), "{kubeconfig}");
    assert_eq!(config.kubectl.context.as_deref(), Some("in-cluster"));

    let deployment = std::fs::read_to_string(dir.join("kubernetes/deployment.yaml")).unwrap();
    for mount in ["mountPath: /etc/quell", "mountPath: /var/lib/quell"] {
        assert!(deployment.contains(mount), "{mount}");
    }
    let containerfile = std::fs::read_to_string(dir.join("Containerfile")).unwrap();
    assert!(containerfile.contains("/usr/share/quell/runbooks"));
}

#[test]
fn the_postgres_configmap_parses_and_keeps_nothing_on_the_pods_disk_that_others_need() {
    let dir = workspace().join("deploy/kubernetes/postgres");
    let configmap = std::fs::read_to_string(dir.join("configmap.yaml")).unwrap();
    let config = Config::parse(&block(&configmap, "quell.toml")).unwrap();
    assert_eq!(config.server.listen.port(), 8080);
    // The database URL comes from the Secret, through the environment.
    assert_eq!(config.database.url, None);
    let deployment = std::fs::read_to_string(dir.join("deployment.yaml")).unwrap();
    assert!(deployment.contains("QUELL_DATABASE_URL"), "{deployment}");
    assert!(deployment.contains("replicas: 2"), "{deployment}");
    // Pods share no disk: post-mortem drafts live in the database only.
    assert!(!config.postmortems.files);
    assert!(config.sandbox.cache_dir.starts_with("/var/lib/quell"));
}
