import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { detectOwnPod, podUidFromCgroup, podUidFromMountinfo } from "../../src/sources/node/own-pod.js";

/** How node mode finds its own pod when POD_UID is not set (real files in a fake /proc and pod log folder). */
const root = mkdtempSync(join(tmpdir(), "ikon-ownpod-unit-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));

const UID = "5f1d2c3b-4a59-4687-9a0b-1c2d3e4f5a6b";

describe("own pod detection", () => {
  it("reads the pod UID from kubelet's mounts and from cgroup paths (cgroupfs and systemd drivers)", () => {
    expect(
      podUidFromMountinfo(
        `1510 1490 259:1 /var/lib/kubelet/pods/${UID}/etc-hosts /etc/hosts rw,relatime - ext4 /dev/root rw\n`,
      ),
    ).toBe(UID);
    expect(podUidFromMountinfo("25 1 0:23 / / rw - overlay overlay rw\n")).toBeUndefined();
    expect(podUidFromCgroup(`12:memory:/kubepods/besteffort/pod${UID}/0123abcd\n`)).toBe(UID);
    expect(
      podUidFromCgroup(
        `0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod${UID.replace(/-/g, "_")}.slice/cri-containerd-ab.scope\n`,
      ),
    ).toBe(UID);
    expect(podUidFromCgroup("0::/\n")).toBeUndefined();
  });

  it("falls back in order: setting, POD_UID, mountinfo, cgroup, a single pod folder named after the hostname", () => {
    const proc = join(root, "proc");
    const pods = join(root, "pods");
    mkdirSync(join(proc, "self"), { recursive: true });
    mkdirSync(join(pods, `logging_agent-x_${UID}`), { recursive: true });
    mkdirSync(join(pods, "shop_web-0_0a0b0c0d-1e1f-4a4b-8c8d-9e9fa0a1a2a3"), { recursive: true });
    writeFileSync(join(proc, "self", "mountinfo"), "25 1 0:23 / / rw - overlay overlay rw\n");
    writeFileSync(join(proc, "self", "cgroup"), "0::/\n");
    const base = { env: {}, podLogDir: pods, procDir: proc };
    expect(detectOwnPod({ ...base, setting: "ABC", hostName: "x" })).toEqual({ uid: "abc", how: "setting" });
    expect(detectOwnPod({ ...base, setting: undefined, env: { POD_UID: UID }, hostName: "x" })?.how).toBe(
      "POD_UID",
    );
    expect(detectOwnPod({ ...base, setting: undefined, hostName: "agent-x" })).toEqual({
      uid: UID,
      how: "hostname",
    });
    expect(detectOwnPod({ ...base, setting: undefined, hostName: "nobody" })).toBeUndefined();
    writeFileSync(join(proc, "self", "cgroup"), `12:memory:/kubepods/pod${UID}/c\n`);
    expect(detectOwnPod({ ...base, setting: undefined, hostName: "nobody" })?.how).toBe("cgroup");
    writeFileSync(
      join(proc, "self", "mountinfo"),
      `1 1 0:1 /var/lib/kubelet/pods/${UID}/volumes/x /x rw - tmpfs t rw\n`,
    );
    expect(detectOwnPod({ ...base, setting: undefined, hostName: "nobody" })?.how).toBe("mountinfo");
  });
});
