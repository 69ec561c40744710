"""Unit tests of disk-space-py with the SDK's MockHost: ``.quell/venv-python/bin/pytest
runbooks/disk-space-py``."""

from quell_runbook import Denied, testing

from app import DiskSpace, host_of


def alert(instance="db-1.internal:9100"):
    i = testing.incident(alertname="NodeDiskSpaceLow", instance=instance)
    i.annotations["value"] = "93"
    return i


def test_matches_disk_alerts_in_any_case():
    assert DiskSpace().matches(testing.incident(alertname="HostDiskFull"))
    assert DiskSpace().matches(testing.incident(alertname="DiskSpaceLow"))
    assert not DiskSpace().matches(testing.incident(alertname="HighErrorRate"))


def test_the_host_is_the_instance_without_its_port():
    assert host_of("db-1.internal:9100") == "db-1.internal"
    assert host_of("[fd00::1]:9100") == "fd00::1"


def test_diagnosis_reads_df_and_plans_the_three_cleanups():
    host = testing.MockHost(ssh=lambda h, c, p: testing.stdout("/dev/sda1 93%\n"))
    with host:
        diagnosis = DiskSpace().diagnose(alert())
    assert diagnosis.plan == [
        "run clean-tmp on db-1.internal",
        "run vacuum-journal (days=3) on db-1.internal",
        "run clean-old-logs on db-1.internal",
    ]
    assert host.ssh_commands() == [("db-1.internal", "disk-usage")]


def test_remediation_succeeds_if_one_cleanup_worked():
    def ssh(h, command, params):
        if command == "vacuum-journal":
            assert params == {"days": "3"}
            return testing.exit(1, "journalctl: not found")
        if command == "clean-old-logs":
            raise Denied("no command clean-old-logs in [ssh.commands]")
        return testing.stdout("")
    host = testing.MockHost(ssh=ssh)
    with host:
        diagnosis = DiskSpace().diagnose(alert())
        done = DiskSpace().remediate(alert(), diagnosis)
    assert (done.success, done.action) == (True, "Cleaned disk on db-1.internal")
    assert done.details == "Ran 1 cleanup commands: clean-tmp"
    assert any("vacuum-journal on db-1.internal exited with 1" in n for n in host.notes())


def test_without_an_instance_nothing_is_cleaned():
    host = testing.MockHost(ssh=lambda h, c, p: testing.stdout(""))
    bare = testing.incident(alertname="DiskSpaceLow")
    with host:
        diagnosis = DiskSpace().diagnose(bare)
        done = DiskSpace().remediate(bare, diagnosis)
    assert not done.success
    assert host.ssh_commands() == []


def test_a_refused_df_is_noted_not_counted_as_a_symptom():
    host = testing.MockHost(ssh=lambda h, c, p: (_ for _ in ()).throw(Denied("no disk-usage")))
    with host:
        diagnosis = DiskSpace().diagnose(alert())
    usage = diagnosis.findings[1]
    assert usage.ok
    assert usage.summary == "not collected: the policy does not allow it (no disk-usage)"
