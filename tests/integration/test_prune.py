"""`compute-units prune` on a real node: after v1 -> v2 and a v3 that was rolled back, the v3 image
goes; v1 (what a rollback returns to) and v2 (running) stay; other repositories are left alone."""

from __future__ import annotations

import json
import subprocess

from compute_units_dev.images import Builder, Registry
from compute_units_dev.node import Node
from compute_units_dev.specs import SVC_VARIANTS, svc_spec

SPEC = "/etc/compute-units/services/prune-svc.yaml"


def cu(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    return node.run(["compute-units", *args], check=False)


def present(node: Node, reference: str) -> bool:
    return node.run(["podman", "image", "exists", reference], check=False).returncode == 0


def test_prune_keeps_what_a_rollback_needs_and_removes_the_rolled_back_image(
    node: Node, builder: Builder, registry: Registry
) -> None:
    base = builder.busybox_base()
    refs, digests = {}, {}
    for tag in ("v1", "v2", "v3"):  # a repository of its own: no other test's images are judged
        # images of their own too (/VERSION says prune-N): the same image as cu-test/svc:v3, pulled by
        # another test, would carry both names, and prune leaves an image another repository names
        args = {**SVC_VARIANTS[tag], "VERSION": f"prune-{tag[1:]}"}
        digests[tag] = registry.push(builder.build("svc", base, args), "cu-test/prune-svc", tag)
        refs[tag] = registry.reference("cu-test/prune-svc", tag)
    pinned = {tag: f"{registry.address}/cu-test/prune-svc@{d}" for tag, d in digests.items()}
    node.run(["podman", "pull", "-q", refs["v1"]])
    node.write_file(SPEC, svc_spec(refs["v1"]))
    try:
        assert cu(node, "apply").returncode == 0
        assert cu(node, "upgrade", "prune-svc", "--image", refs["v2"]).returncode == 0
        assert (
            cu(node, "upgrade", "prune-svc", "--image", refs["v3"]).returncode == 5
        )  # unhealthy: rolled back

        dry = cu(node, "prune", "--dry-run", "--json")
        assert dry.returncode == 0, dry.stderr
        ours = {i["names"][0]: (i["keep"], i["reason"]) for i in json.loads(dry.stdout)["images"]}
        assert ours[refs["v1"]] == (True, "the spec of prune-svc names it")
        assert ours[refs["v2"]] == (True, "used by 1 container(s)")
        assert ours[refs["v3"]] == (False, "no service runs it and no rollback could need it")
        assert all(present(node, pinned[t]) for t in ("v1", "v2", "v3"))

        v3_id = node.run(["podman", "image", "inspect", pinned["v3"], "--format", "{{.Id}}"]).stdout.strip()
        done = cu(node, "prune", "--json")
        assert done.returncode == 0, done.stderr
        removed = json.loads(done.stdout)["removed"]
        # v3 goes; unused images of other tests' services on this shared node may go with it
        assert v3_id in removed
        assert [present(node, pinned[t]) for t in ("v1", "v2", "v3")] == [True, True, False]
        assert cu(node, "rollback", "prune-svc").returncode == 0  # to v1: still there, no pull needed
        again = json.loads(cu(node, "prune", "--dry-run", "--json").stdout)
        assert [i for i in again["images"] if not i["keep"]] == []
    finally:
        cu(node, "stop", "prune-svc")
        node.run(["sh", "-c", f"rm -f {SPEC}; rm -rf /var/lib/compute-units"])
        cu(node, "generate")
        node.systemctl("daemon-reload")
        node.systemctl("reset-failed", check=False)
