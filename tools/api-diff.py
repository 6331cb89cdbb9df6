#!/usr/bin/env python3
"""Send the same sequence of Engine API requests to ketchd and to Debian's
dockerd, side by side, and diff their answers: the status codes, and the
JSON bodies by key and by type (values differ by nature: ids, times).

    python3 tools/api-diff.py [--ketchd target/release/ketchd] [-o report.md]

Both daemons run on private sockets and data roots under a temp directory
and are stopped at the end, and the bridge ketchd made is deleted; dockerd
runs with --bridge=none and --iptables=false, so the host's network is
left alone. The image both
compare is imported from a busybox root filesystem (/bin/busybox), so no
registry is needed. Without dockerd installed there is nothing to compare
against, and the script says so.
"""

import argparse
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=60)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(60)
        s.connect(self.unix_path)
        self.sock = s


def call(sock, method, path, body=None, ctype="application/json"):
    conn = UnixConnection(sock)
    headers = {"Content-Type": ctype} if body is not None else {}
    if isinstance(body, str):
        body = body.encode()
    conn.request(method, path, body=body, headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    conn.close()
    parsed = None
    text = data.decode("utf-8", "replace").strip()
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            # JSON lines (progress, events): the last whole one.
            for line in reversed(text.splitlines()):
                try:
                    parsed = json.loads(line)
                    break
                except ValueError:
                    continue
    return resp.status, parsed


def kind(v):
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    return "object"


def shape_diff(docker, ketch, path, out):
    kd, kk = kind(docker), kind(ketch)
    if kd != kk:
        out.append(f"`{path or '.'}`: dockerd {kd}, ketch {kk}")
        return
    if kd == "object":
        for k in sorted(set(docker) | set(ketch)):
            sub = f"{path}.{k}"
            if k not in ketch:
                out.append(f"`{sub}`: only dockerd's")
            elif k not in docker:
                out.append(f"`{sub}`: only ketch's")
            else:
                shape_diff(docker[k], ketch[k], sub, out)
    elif kd == "array" and docker and ketch:
        shape_diff(docker[0], ketch[0], f"{path}[0]", out)


def busybox_rootfs():
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for d in ("bin", "etc", "tmp"):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        t.add("/bin/busybox", arcname="bin/busybox")
        for applet in ("sh", "true", "echo", "sleep", "cat"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "/bin/busybox"
            t.addfile(info)
        passwd = b"root:x:0:0:root:/:/bin/sh\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        t.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def wait_ping(sock, proc, what):
    for _ in range(300):
        if proc.poll() is not None:
            sys.exit(f"{what} exited early with {proc.returncode}")
        try:
            if call(sock, "GET", "/_ping")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    sys.exit(f"{what} did not answer /_ping within 30 s")


def sequence(rootfs):
    """The requests, in order: (title, method, path, body, content type)."""
    create = json.dumps(
        {"Image": "apidiff:v1", "Cmd": ["true"], "Labels": {"a": "b"},
         "HostConfig": {"Memory": 67108864}}
    )
    return [
        ("ping", "GET", "/_ping", None, None),
        ("version", "GET", "/version", None, None),
        ("info", "GET", "/info", None, None),
        ("import", "POST", "/images/create?fromSrc=-&repo=apidiff&tag=v1", rootfs,
         "application/x-tar"),
        ("image list", "GET", "/images/json", None, None),
        ("image inspect", "GET", "/images/apidiff:v1/json", None, None),
        ("image history", "GET", "/images/apidiff:v1/history", None, None),
        ("container create", "POST", "/containers/create?name=apidiff-c", create, None),
        ("container inspect", "GET", "/containers/apidiff-c/json", None, None),
        ("container list", "GET", "/containers/json?all=1", None, None),
        ("container list, filtered", "GET",
         "/containers/json?all=1&filters=%7B%22label%22%3A%5B%22a%3Db%22%5D%7D", None, None),
        ("container changes", "GET", "/containers/apidiff-c/changes", None, None),
        ("container update", "POST", "/containers/apidiff-c/update",
         json.dumps({"Memory": 134217728}), None),
        ("container rename", "POST", "/containers/apidiff-c/rename?name=apidiff-d", None, None),
        ("volume create", "POST", "/volumes/create",
         json.dumps({"Name": "apidiff-v", "Labels": {"x": "y"}}), None),
        ("volume inspect", "GET", "/volumes/apidiff-v", None, None),
        ("volume list", "GET", "/volumes", None, None),
        ("network list", "GET", "/networks", None, None),
        ("system df", "GET", "/system/df", None, None),
        ("missing container", "GET", "/containers/nosuch/json", None, None),
        ("missing image", "GET", "/images/nosuch:1/json", None, None),
        ("bad create body", "POST", "/containers/create", "{not json", None),
        ("unknown filter", "GET", "/containers/json?filters=%7B%22colour%22%3A%5B%22red%22%5D%7D",
         None, None),
        ("container remove", "DELETE", "/containers/apidiff-d", None, None),
        ("volume remove", "DELETE", "/volumes/apidiff-v", None, None),
        ("image remove", "DELETE", "/images/apidiff:v1", None, None),
    ]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ketchd", default="target/release/ketchd")
    ap.add_argument("--dockerd", default=shutil.which("dockerd") or "")
    ap.add_argument("-o", "--output", help="write the report here too")
    a = ap.parse_args()
    if not a.dockerd:
        print("dockerd is not installed: nothing to compare against")
        return 0
    tmp = tempfile.mkdtemp(prefix="api-diff-")
    ksock, dsock = f"{tmp}/ketch.sock", f"{tmp}/docker.sock"
    logs = open(f"{tmp}/daemons.log", "wb")
    ketchd = subprocess.Popen(
        [a.ketchd, "--data-root", f"{tmp}/k", "-H", f"unix://{ksock}"],
        stdout=logs, stderr=logs)
    dockerd = subprocess.Popen(
        [a.dockerd, "--data-root", f"{tmp}/d", "--exec-root", f"{tmp}/e",
         "-H", f"unix://{dsock}", "--pidfile", f"{tmp}/docker.pid",
         "--bridge=none", "--iptables=false"],
        stdout=logs, stderr=logs)
    report = ["# Engine API: dockerd and ketchd side by side", ""]
    total = 0
    try:
        wait_ping(ksock, ketchd, "ketchd")
        wait_ping(dsock, dockerd, "dockerd")
        _, v = call(dsock, "GET", "/version")
        report.append(f"dockerd {v.get('Version')} (API {v.get('ApiVersion')}) and ketchd, "
                      "the same requests in order. Values differ by nature; "
                      "listed are status codes, and keys and types of the JSON.")
        report.append("")
        for title, method, path, body, ctype in sequence(busybox_rootfs()):
            ds, dj = call(dsock, method, path, body, ctype or "application/json")
            ks, kj = call(ksock, method, path, body, ctype or "application/json")
            diffs = []
            if ds != ks:
                diffs.append(f"status: dockerd {ds}, ketch {ks}")
            shape_diff(dj, kj, "", diffs)
            total += len(diffs)
            head = f"- **{title}** (`{method} {path.split('?')[0]}`)"
            if not diffs:
                report.append(f"{head}: same")
                continue
            report.append(f"{head}: {len(diffs)}")
            report.extend(f"  - {d}" for d in diffs)
        report.append("")
        report.append(f"{total} differences in all.")
    finally:
        for p in (ketchd, dockerd):
            p.terminate()
        for p in (ketchd, dockerd):
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        # ketchd keeps its networks' bridges, as dockerd keeps docker0:
        # the ones it made here go with its data root.
        here = os.path.dirname(os.path.abspath(__file__))
        owned = subprocess.run(
            [sys.executable, os.path.join(here, "..", "tests", "owned_bridges.py"), f"{tmp}/k"],
            capture_output=True, text=True).stdout.split()
        for b in owned:
            subprocess.run(["ip", "link", "del", b], stderr=subprocess.DEVNULL)
        subprocess.run(["umount", "-R", f"{tmp}/d"], stderr=subprocess.DEVNULL)
        shutil.rmtree(tmp, ignore_errors=True)
    text = "\n".join(report) + "\n"
    sys.stdout.write(text)
    if a.output:
        with open(a.output, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
