"""A hostile Python runbook for the containment tests: it reaches for what the sandbox does
not grant and reports what it got. The annotation ``quell.test/python`` picks the behaviour:

- ``reach``: the filesystem, sockets, the environment and subprocesses; each finding says
  what came back (an exception's type, or what was read);
- ``spin``: loops forever (the deadline must stop it);
- ``memory``: allocates until it is stopped (the memory cap must stop it);
- ``recurse``: unbounded recursion (Python's own limit raises; the run fails cleanly);
- ``raise``: raises from ``diagnose`` (the run fails with the message);
- ``one-call``: one kubectl call (which its policy refuses), for the runtime benchmark;
- ``context``: the 0.1.1 additions through the component's imports: ``dry_run()``, a field
  selector (refused: the policy grants no kubectl) and ``escalate``;
- ``hold``: GET the URL in the annotation ``quell.test/url`` (a server that never answers
  keeps the instance alive until the deadline).
"""

import encodings.idna  # noqa: F401: name lookups encode host names; import it at build time
import os
import socket
import subprocess
import sys

from quell_runbook import (Denied, Diagnosis, Finding, HostError, Runbook, dry_run, escalate,
                           export, http, kubectl)


def attempt(name, action):
    try:
        got = action()
    except BaseException as e:  # noqa: BLE001: what came back is the finding
        return Finding.passed(name, f"refused: {type(e).__name__}: {e}")
    return Finding.failed(name, f"got: {got!r}"[:500])


def read_passwd():
    with open("/etc/passwd") as f:
        return f.read(100)


def connect(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.connect(("127.0.0.1", port))
    return s


class Hostile(Runbook):
    def matches(self, incident):
        return True

    def diagnose(self, incident):
        behaviour = incident.annotation("quell.test/python", "reach")
        if behaviour == "spin":
            while True:
                pass
        if behaviour == "memory":
            hoard = []
            while True:
                hoard.append(bytearray(1 << 20))
        if behaviour == "recurse":
            def down(n):
                return down(n + 1) + 1
            down(0)
        if behaviour == "raise":
            raise RuntimeError("the runbook gave up")
        if behaviour == "context":
            try:
                kubectl.events_for("production", "Pod", "api-1")
                selected = "allowed"
            except HostError as error:
                selected = str(error)
            escalate("python hands over")
            return Diagnosis("context", findings=[
                Finding.passed("dry-run", str(dry_run())),
                Finding.passed("field-selector", selected),
            ])
        if behaviour == "hold":
            try:
                http.get(incident.annotation("quell.test/url", ""))
            except HostError as error:
                return Diagnosis("held", findings=[Finding.passed("hold", str(error))])
            return Diagnosis("held", findings=[Finding.passed("hold", "answered")])
        if behaviour == "one-call":
            try:
                kubectl.get_pods("kube-system", "app=api")
            except Denied as denied:
                return Diagnosis("one call", findings=[Finding.passed("kubectl", str(denied))])
            return Diagnosis("one call", findings=[Finding.failed("kubectl", "allowed")])
        port = int(incident.annotation("quell.test/port", "9"))
        findings = [
            attempt("read-file", read_passwd),
            attempt("list-root", lambda: os.listdir("/")),
            attempt("write-file", lambda: open("/tmp/quell-python-pwned", "w").write("x")),
            attempt("socket", lambda: connect(port)),
            attempt("resolve", lambda: socket.getaddrinfo("localhost", 80)),
            attempt("environment", lambda: dict(os.environ) or (_ for _ in ()).throw(
                LookupError("empty"))),
            attempt("subprocess", lambda: subprocess.run(["id"], capture_output=True)),
            attempt("argv", lambda: sys.argv[1] if len(sys.argv) > 1 else (_ for _ in ()).throw(
                LookupError("no arguments"))),
        ]
        return Diagnosis("reached for everything", findings=findings)


WitWorld = export(Hostile)
