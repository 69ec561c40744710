use quell_runbook_sdk::testing::{self, Call, MockHost};

use super::*;

/// A host where each command exits with the status `exit` gives it; unknown ids are denied.
fn host(exit: fn(&str) -> Option<i32>) -> MockHost {
    MockHost::new().ssh(move |_host, command, _params| match exit(command) {
        Some(0) => Ok(testing::stdout(format!("{command} done\n"))),
        Some(code) => Ok(testing::exit(code, format!("{command} failed"))),
        None => Err(HostError::Denied(format!(
            "no [ssh.commands] entry {command:?}"
        ))),
    })
}

fn incident() -> Incident {
    testing::incident()
        .label("alertname", "NodeDiskSpaceLow")
        .label("instance", "db-1.internal:9100")
        .annotation("value", "93%")
        .build()
}

fn run(host: &MockHost, incident: &Incident) -> Result<(Diagnosis, Remediation), String> {
    let _guard = host.install();
    let diagnosis = DiskSpace::diagnose(incident)?;
    let remediation = DiskSpace::remediate(incident, &diagnosis)?;
    Ok((diagnosis, remediation))
}

#[test]
fn matches_disk_alerts() {
    let with_name = |name: &str| testing::incident().label("alertname", name).build();
    assert!(DiskSpace::matches(&with_name("DiskSpaceLow")));
    assert!(DiskSpace::matches(&with_name("NodeDiskPressure")));
    assert!(DiskSpace::matches(&with_name("disk_full")));
    assert!(!DiskSpace::matches(&with_name("HighErrorRate")));
}

#[test]
fn cleans_the_alerting_host_with_the_three_commands() -> Result<(), String> {
    let host = host(|_| Some(0));

    let (diagnosis, remediation) = run(&host, &incident())?;

    let cleanup: Vec<Call> = host
        .calls()
        .into_iter()
        .filter(|c| matches!(c, Call::Ssh { .. }))
        .skip(1)
        .collect();
    let expected = |command: &str, params: &[(&str, &str)]| Call::Ssh {
        host: "db-1.internal".to_owned(),
        command: command.to_owned(),
        params: params
            .iter()
            .map(|&(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
    };
    assert_eq!(
        cleanup,
        [
            expected("clean-tmp", &[]),
            expected("vacuum-journal", &[("days", "3")]),
            expected("clean-old-logs", &[])
        ]
    );
    assert_eq!(
        diagnosis.plan[1],
        "run vacuum-journal (days=3) on db-1.internal"
    );
    assert!(remediation.success);
    assert_eq!(remediation.action_taken, "Cleaned disk on db-1.internal");
    assert_eq!(
        remediation.details,
        "Ran 3 cleanup commands: clean-tmp, vacuum-journal, clean-old-logs"
    );
    Ok(())
}

#[test]
fn diagnose_reads_disk_usage_only() -> Result<(), String> {
    let host = host(|_| Some(0));
    let _guard = host.install();

    let diagnosis = DiskSpace::diagnose(&incident())?;

    assert_eq!(
        host.ssh_commands(),
        [("db-1.internal".to_owned(), "disk-usage".to_owned())]
    );
    let facts: Facts = diagnosis.data()?;
    assert_eq!(facts.host.as_deref(), Some("db-1.internal"));
    assert_eq!(facts.alert_value, "93%");
    assert_eq!(facts.disk_usage.as_deref(), Some("disk-usage done\n"));
    Ok(())
}

#[test]
fn denied_disk_usage_is_only_noted() -> Result<(), String> {
    let host = host(|command| (command != "disk-usage").then_some(0));
    let _guard = host.install();

    let diagnosis = DiskSpace::diagnose(&incident())?;

    let usage = diagnosis
        .findings
        .iter()
        .find(|f| f.name == "disk-usage")
        .ok_or("no disk-usage finding")?;
    assert!(usage.ok);
    assert!(
        usage
            .summary
            .starts_with("not collected: the policy does not allow it")
    );
    assert_eq!(diagnosis.plan.len(), 3);
    Ok(())
}

#[test]
fn one_successful_command_is_enough() -> Result<(), String> {
    let host = host(|command| Some(if command == "vacuum-journal" { 0 } else { 1 }));

    let (_, remediation) = run(&host, &incident())?;

    assert!(remediation.success);
    assert_eq!(
        remediation.details,
        "Ran 1 cleanup commands: vacuum-journal"
    );
    assert!(
        host.notes()
            .iter()
            .any(|n| n == "clean-tmp on db-1.internal exited with 1: clean-tmp failed")
    );
    Ok(())
}

#[test]
fn all_commands_failing_escalates() -> Result<(), String> {
    let host = host(|command| (command == "clean-tmp").then_some(2));

    let (_, remediation) = run(&host, &incident())?;

    assert!(!remediation.success);
    assert_eq!(remediation.action_taken, "Cleanup commands failed");
    assert_eq!(remediation.details, "Manual disk investigation required");
    assert_eq!(host.ssh_commands().len(), 4);
    Ok(())
}

#[test]
fn no_instance_means_no_ssh() -> Result<(), String> {
    let host = host(|_| Some(0));
    let incident = testing::incident()
        .label("alertname", "DiskSpaceLow")
        .build();

    let (diagnosis, remediation) = run(&host, &incident)?;

    assert_eq!(host.ssh_commands(), []);
    assert!(!diagnosis.findings[0].ok);
    assert!(!remediation.success);
    let facts: Facts = diagnosis.data()?;
    assert_eq!(facts.alert_value, "unknown");
    Ok(())
}

#[test]
fn instance_port_is_stripped() {
    assert_eq!(host_of("db-1.internal:9100"), "db-1.internal");
    assert_eq!(host_of("10.0.0.7"), "10.0.0.7");
    assert_eq!(host_of("[fd00::1]:9100"), "fd00::1");
}
