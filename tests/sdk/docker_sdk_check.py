"""The Docker SDK for Python (PyPI `docker`) against a ketchd.

Run by tests/all/sdk.rs as: python3 docker_sdk_check.py SOCKET WASM_IMAGE
LINUX_IMAGE [REGISTRY_REF]. Prints one line per check; any failure raises.
"""
import sys

import docker

sock, wasm_image, linux_image = sys.argv[1:4]
registry_ref = sys.argv[4] if len(sys.argv) > 4 else ""
client = docker.DockerClient(base_url="unix://" + sock, timeout=60)


def check(name, cond, detail=""):
    if not cond:
        raise AssertionError(f"{name}: {detail}")
    print("ok", name)


check("ping", client.ping())
version = client.version()
check("version", version["ApiVersion"] and version["Components"], version)

tags = [t for i in client.images.list() for t in i.tags]
check("images.list", any(t.startswith(wasm_image) for t in tags), tags)

# Both kinds of container through the same calls.
for kind, image, cmd in [
    ("wasm", wasm_image, None),
    ("linux", linux_image, ["sh", "-c", "echo hello from linux"]),
]:
    out = client.containers.run(image, cmd, remove=True)
    check(f"{kind} containers.run", out.startswith(b"hello from"), out)

    c = client.containers.run(image, cmd, detach=True, name=f"sdk-{kind}")
    status = c.wait(timeout=60)
    check(f"{kind} wait", status["StatusCode"] == 0, status)
    logs = c.logs()
    check(f"{kind} logs", logs.startswith(b"hello from"), logs)
    names = [x.name for x in client.containers.list(all=True)]
    check(f"{kind} containers.list", f"sdk-{kind}" in names, names)
    c.reload()
    check(f"{kind} attrs", c.attrs["State"]["Status"] == "exited", c.attrs["State"])
    c.remove()
    check(
        f"{kind} remove",
        f"sdk-{kind}" not in [x.name for x in client.containers.list(all=True)],
    )

# exec_run on a running Linux container.
c = client.containers.run(linux_image, ["sleep", "60"], detach=True, name="sdk-exec")
code, out = c.exec_run(["sh", "-c", "echo in exec; exit 3"])
check("exec_run", (code, out) == (3, b"in exec\n"), (code, out))
code, out = c.exec_run("hostname")
check("exec_run hostname", code == 0 and out.strip() == c.id[:12].encode(), out)
c.stop(timeout=1)
check("stop", c.wait()["StatusCode"] in (137, 143))
c.remove(force=True)

if registry_ref:
    pulled = client.images.pull(registry_ref)
    check("images.pull", registry_ref in pulled.tags, pulled.tags)
    out = client.containers.run(registry_ref, remove=True)
    check("run pulled", out.startswith(b"hello from"), out)

print("all SDK checks passed")
