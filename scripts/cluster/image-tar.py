#!/usr/bin/env python3
"""Writes a one-layer docker-save image tarball from a folder, for `ctr images import` (no registry, no docker).

  image-tar.py ROOTFS NAME:TAG OUT.tar [--entrypoint JSON] [--cmd JSON] [--user U] [--workdir D] [--env K=V ...]

The layer is the folder as it is (owners, modes, symlinks kept): build it as root.
"""
import argparse
import hashlib
import io
import json
import os
import tarfile
import tempfile

p = argparse.ArgumentParser()
p.add_argument("rootfs")
p.add_argument("name")
p.add_argument("out")
p.add_argument("--entrypoint", default=None)
p.add_argument("--cmd", default=None)
p.add_argument("--user", default="")
p.add_argument("--workdir", default="/")
p.add_argument("--env", action="append", default=[])
a = p.parse_args()

with tempfile.TemporaryFile() as layer:
    with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
        for entry in sorted(os.listdir(a.rootfs)):
            t.add(os.path.join(a.rootfs, entry), arcname=entry, recursive=True)
    layer.seek(0)
    h = hashlib.sha256()
    for chunk in iter(lambda: layer.read(1 << 20), b""):
        h.update(chunk)
    diff_id = "sha256:" + h.hexdigest()
    size = layer.tell()
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", *a.env],
            "Entrypoint": json.loads(a.entrypoint) if a.entrypoint else None,
            "Cmd": json.loads(a.cmd) if a.cmd else None,
            "User": a.user,
            "WorkingDir": a.workdir,
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created_by": "scripts/cluster/image-tar.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_name = diff_id[7:] + "/layer.tar"
    manifest = [{"Config": config_name, "RepoTags": [a.name], "Layers": [layer_name]}]
    with tarfile.open(a.out, "w") as out:
        def add_bytes(name, data):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            out.addfile(info, io.BytesIO(data))
        add_bytes(config_name, config_bytes)
        add_bytes("manifest.json", json.dumps(manifest).encode())
        info = tarfile.TarInfo(layer_name)
        info.size = size
        layer.seek(0)
        out.addfile(info, layer)
