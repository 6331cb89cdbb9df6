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

# The verbs scripts rely on, on a Linux container.
c = client.containers.run(
    linux_image,
    ["sh", "-c", "echo made > /made; exec sleep 60"],
    detach=True,
    name="sdk-depth",
    labels={"tier": "sdk", "depth": "1"},
    log_config=docker.types.LogConfig(type="json-file", config={"max-size": "1k", "max-file": "2"}),
    healthcheck={"test": ["CMD", "true"], "interval": 200_000_000, "retries": 1},
)
c.reload()
log_config = c.attrs["HostConfig"]["LogConfig"]
check("log_config", log_config["Type"] == "json-file" and log_config["Config"]["max-size"] == "1k", log_config)
labelled = client.containers.list(filters={"label": ["tier=sdk", "depth"]})
check("label filters all hold", [x.name for x in labelled] == ["sdk-depth"], labelled)
check("label filters", client.containers.list(filters={"label": ["tier=sdk", "nosuch"]}) == [])
for _ in range(100):
    c.reload()
    if c.attrs["State"].get("Health", {}).get("Status") == "healthy":
        break
    import time

    time.sleep(0.1)
check("health", c.attrs["State"]["Health"]["Status"] == "healthy", c.attrs["State"])
check("health filter", [x.name for x in client.containers.list(filters={"health": "healthy"})] == ["sdk-depth"])
code, out = c.exec_run(["sh", "-c", "echo $X $(id -u) $(pwd)"], user="65534", workdir="/bin", environment={"X": "y"})
check("exec_run -u -w -e", (code, out) == (0, b"y 65534 /bin\n"), (code, out))
code, out = c.exec_run(["true"], workdir="/nosuch")
check("exec_run missing workdir", code == 126 and b'chdir to cwd ("/nosuch")' in out, (code, out))
code, out = c.exec_run(["sh", "-c", "echo tty"], tty=True)
check("exec_run tty", (code, out) == (0, b"tty\r\n"), (code, out))
code, out = c.exec_run(["nosuchcmd"])
check("exec_run 127", code == 127 and b"executable file not found" in out, (code, out))
attached = c.attach(logs=True, stream=False, stdout=True, stderr=True)
check("attach logs", attached == b"", attached)
changes = c.diff()
check("diff", {"Path": "/made", "Kind": 1} in changes, changes)
c.rename("sdk-renamed")
c.reload()
check("rename", c.name == "sdk-renamed", c.name)
c.update(mem_limit="64m", restart_policy={"Name": "on-failure", "MaximumRetryCount": 2})
c.reload()
check("update", c.attrs["HostConfig"]["Memory"] == 64 << 20, c.attrs["HostConfig"]["Memory"])
check("update restart", c.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure")
image = c.commit(repository="sdk-committed", tag="v1", message="by the sdk", author="sdk", changes=["ENV COMMITTED=1"])
history = image.history()
check("commit and history", history[0]["Comment"] == "by the sdk", history[0])
check("commit config", "COMMITTED=1" in image.attrs["Config"]["Env"], image.attrs["Config"])
out = client.containers.run("sdk-committed:v1", ["cat", "/made"], remove=True)
check("run committed", out == b"made\n", out)
exported = b"".join(c.export())
check("export", len(exported) > 1024, len(exported))
client.api.import_image_from_data(exported, repository="sdk-imported", tag="v1", changes=["CMD [\"cat\", \"/made\"]"])
out = client.containers.run("sdk-imported:v1", remove=True)
check("import", out == b"made\n", out)
df = client.df()
check("df", any(i["RepoTags"] == ["sdk-imported:v1"] for i in df["Images"]), df["Images"])
c.remove(force=True)
for name in ["sdk-committed:v1", "sdk-imported:v1"]:
    client.images.remove(name)

# A bad option is a 400 that names it, and nothing is made.
try:
    client.containers.create(linux_image, ["true"], name="sdk-bad", privileged=True)
    raise AssertionError("privileged was accepted")
except docker.errors.APIError as e:
    check("refused by name", e.status_code == 400 and "Privileged" in str(e), e)
check("nothing made", "sdk-bad" not in [x.name for x in client.containers.list(all=True)])

if registry_ref:
    dist = client.api.inspect_distribution(registry_ref)
    check("inspect_distribution", dist["Descriptor"]["digest"].startswith("sha256:"), dist)
    pulled = client.images.pull(registry_ref)
    check("images.pull", registry_ref in pulled.tags, pulled.tags)
    out = client.containers.run(registry_ref, remove=True)
    check("run pulled", out.startswith(b"hello from"), out)

print("all SDK checks passed")
