#!/usr/bin/env python3
"""A small CRI (Kubernetes Container Runtime Interface, runtime.v1) client.

It drives a containerd CRI plugin the way the kubelet would for a one-shot
pod: RunPodSandbox -> CreateContainer -> StartContainer -> ContainerStatus
until the container has exited -> read its log -> RemoveContainer ->
StopPodSandbox -> RemovePodSandbox. The pod uses the host's network
(NamespaceOption network = NODE), so no CNI plugin is needed.

    cri.py --socket /path/containerd.sock --handler ketch \
        --image REF --sandbox-image REF --log-dir DIR [--timeout 30] [--pull]

It prints one JSON line on stdout:
    {"exit_code": N, "log": "...", "pod_state": "...", "container_state": "..."}
(with an "error" member when something failed), messages on stderr, and
exits 0 only when every RPC succeeded (whatever the container's own exit
code, which the JSON reports). The pod and container are removed even on
failure.

The CRI messages come from api.proto beside this file (a subset of
upstream's, same names and field numbers), compiled at run time with
grpc_tools.protoc. grpcio and grpcio-tools come from target/cri-venv (made
by .ci/setup); run with that venv's python, or with any python3, which then
re-runs itself under target/cri-venv/bin/python when it can't import grpc.
"""

import argparse
import json
import os
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
VENV_PYTHON = os.path.join(HERE, "..", "..", "target", "cri-venv", "bin", "python")

try:
    import grpc
    from grpc_tools import protoc
except ImportError:
    venv = os.path.normpath(VENV_PYTHON)
    venv_dir = os.path.dirname(os.path.dirname(venv))
    if os.path.exists(venv) and os.path.realpath(sys.prefix) != os.path.realpath(venv_dir):
        os.execv(venv, [venv, os.path.abspath(__file__)] + sys.argv[1:])
    sys.stderr.write(
        "cri.py: grpcio and grpcio-tools are not importable; run .ci/setup "
        "(it makes target/cri-venv) and use target/cri-venv/bin/python\n"
    )
    sys.exit(3)


class RpcError(Exception):
    """A failed RPC, named."""

    def __init__(self, rpc, err):
        if isinstance(err, grpc.RpcError):
            detail = "%s: %s" % (err.code().name, err.details())
        else:
            detail = str(err)
        super().__init__("%s failed: %s" % (rpc, detail))
        self.rpc = rpc


def compile_api(out_dir):
    """Compiles api.proto into out_dir and imports api_pb2, api_pb2_grpc."""
    import grpc_tools

    proto_include = os.path.join(os.path.dirname(grpc_tools.__file__), "_proto")
    rc = protoc.main(
        [
            "grpc_tools.protoc",
            "-I" + HERE,
            "-I" + proto_include,
            "--python_out=" + out_dir,
            "--grpc_python_out=" + out_dir,
            os.path.join(HERE, "api.proto"),
        ]
    )
    if rc != 0:
        raise SystemExit("cri.py: protoc could not compile %s/api.proto" % HERE)
    sys.path.insert(0, out_dir)
    import api_pb2
    import api_pb2_grpc

    return api_pb2, api_pb2_grpc


def log(msg):
    sys.stderr.write("cri.py: %s\n" % msg)
    sys.stderr.flush()


class Client:
    def __init__(self, pb, pb_grpc, socket, rpc_timeout):
        self.pb = pb
        self.channel = grpc.insecure_channel("unix://" + os.path.abspath(socket))
        self.runtime = pb_grpc.RuntimeServiceStub(self.channel)
        self.images = pb_grpc.ImageServiceStub(self.channel)
        self.rpc_timeout = rpc_timeout

    def call(self, stub, rpc, request):
        try:
            return getattr(stub, rpc)(request, timeout=self.rpc_timeout)
        except grpc.RpcError as e:
            raise RpcError(rpc, e) from None

    def rt(self, rpc, request):
        return self.call(self.runtime, rpc, request)

    def img(self, rpc, request):
        return self.call(self.images, rpc, request)


def ensure_image(c, ref, pull, sandbox_config=None):
    """ImageStatus; PullImage when absent and pull is asked for."""
    pb = c.pb
    st = c.img("ImageStatus", pb.ImageStatusRequest(image=pb.ImageSpec(image=ref)))
    if st.image.id:
        log("image %s present (%s)" % (ref, st.image.id))
        return
    if not pull:
        raise RpcError(
            "ImageStatus",
            "image %s is not in the CRI image store (pre-pull it into the "
            "k8s.io namespace, or pass --pull)" % ref,
        )
    req = pb.PullImageRequest(image=pb.ImageSpec(image=ref))
    if sandbox_config is not None:
        req.sandbox_config.CopyFrom(sandbox_config)
    r = c.img("PullImage", req)
    log("pulled %s (%s)" % (ref, r.image_ref))


def run(args, c, result):
    pb = c.pb
    log_dir = os.path.abspath(args.log_dir)
    os.makedirs(log_dir, exist_ok=True)

    v = c.rt("Version", pb.VersionRequest(version="v1"))
    log(
        "runtime %s %s, CRI %s"
        % (v.runtime_name, v.runtime_version, v.runtime_api_version)
    )

    uid = str(uuid.uuid4())
    sandbox_config = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(
            name="ketch-cri-hello", uid=uid, namespace="default", attempt=0
        ),
        log_directory=log_dir,
        labels={"app": "ketch-cri"},
        linux=pb.LinuxPodSandboxConfig(
            security_context=pb.LinuxSandboxSecurityContext(
                namespace_options=pb.NamespaceOption(
                    network=pb.NODE, pid=pb.CONTAINER, ipc=pb.POD
                )
            )
        ),
    )

    ensure_image(c, args.sandbox_image, args.pull, sandbox_config)
    ensure_image(c, args.image, args.pull, sandbox_config)

    r = c.rt(
        "RunPodSandbox",
        pb.RunPodSandboxRequest(config=sandbox_config, runtime_handler=args.handler),
    )
    result["pod_id"] = r.pod_sandbox_id
    log("pod sandbox %s" % r.pod_sandbox_id)

    r = c.rt(
        "CreateContainer",
        pb.CreateContainerRequest(
            pod_sandbox_id=result["pod_id"],
            config=pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="hello", attempt=0),
                image=pb.ImageSpec(image=args.image),
                log_path="hello.log",
            ),
            sandbox_config=sandbox_config,
        ),
    )
    result["container_id"] = r.container_id
    log("container %s" % r.container_id)

    c.rt("StartContainer", pb.StartContainerRequest(container_id=r.container_id))
    log("started")

    deadline = time.monotonic() + args.timeout
    while True:
        st = c.rt(
            "ContainerStatus",
            pb.ContainerStatusRequest(container_id=result["container_id"]),
        ).status
        result["container_state"] = pb.ContainerState.Name(st.state)
        if st.state == pb.CONTAINER_EXITED:
            result["exit_code"] = st.exit_code
            if st.reason:
                result["reason"] = st.reason
            break
        if time.monotonic() > deadline:
            raise RpcError(
                "ContainerStatus (waiting for the container to exit)",
                "timed out: container still %s after %ss"
                % (result["container_state"], args.timeout),
            )
        time.sleep(0.1)
    log("exited with %s" % result["exit_code"])

    ps = c.rt(
        "PodSandboxStatus", pb.PodSandboxStatusRequest(pod_sandbox_id=result["pod_id"])
    ).status
    result["pod_state"] = pb.PodSandboxState.Name(ps.state)

    result["log"] = read_log(args)


def read_log(args):
    path = os.path.join(os.path.abspath(args.log_dir), "hello.log")
    with open(path, "r", encoding="utf-8", errors="replace") as f:
        return f.read()


def cleanup(c, result, errors):
    pb = c.pb
    steps = []
    if result.get("container_id"):
        cid = result["container_id"]
        steps.append(("RemoveContainer", pb.RemoveContainerRequest(container_id=cid)))
    if result.get("pod_id"):
        pid = result["pod_id"]
        steps.append(("StopPodSandbox", pb.StopPodSandboxRequest(pod_sandbox_id=pid)))
        steps.append(
            ("RemovePodSandbox", pb.RemovePodSandboxRequest(pod_sandbox_id=pid))
        )
    for rpc, req in steps:
        try:
            c.rt(rpc, req)
            log("%s done" % rpc)
        except RpcError as e:
            log(str(e))
            errors.append(str(e))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", required=True, help="containerd's gRPC socket")
    p.add_argument("--handler", required=True, help="CRI runtime handler, e.g. ketch")
    p.add_argument("--image", required=True, help="the container's image")
    p.add_argument(
        "--sandbox-image",
        required=True,
        help="the sandbox image the CRI plugin is configured with (checked with "
        "ImageStatus; pulled with --pull)",
    )
    p.add_argument("--log-dir", required=True, help="the pod's log directory")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    p.add_argument(
        "--pull",
        action="store_true",
        help="PullImage the images the CRI image store lacks (default: they must "
        "be there already)",
    )
    args = p.parse_args()

    result = {"exit_code": None, "log": None, "pod_state": None, "container_state": None}
    errors = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ketch-cri-") as gen:
        pb, pb_grpc = compile_api(gen)
        c = Client(pb, pb_grpc, args.socket, max(args.timeout, 10.0))
        try:
            run(args, c, result)
        except RpcError as e:
            log(str(e))
            errors.append(str(e))
        except OSError as e:
            msg = "reading the container log failed: %s" % e
            log(msg)
            errors.append(msg)
        finally:
            cleanup(c, result, errors)
            c.channel.close()
    if errors and result["log"] is None and result.get("container_id"):
        # What the container wrote before things went wrong, if anything.
        try:
            result["log"] = read_log(args)
        except OSError:
            pass
    result["seconds"] = round(time.monotonic() - start, 2)
    if errors:
        result["error"] = "; ".join(errors)
    print(json.dumps(result), flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
