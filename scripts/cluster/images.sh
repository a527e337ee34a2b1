# Images for the test cluster, made without a registry and imported into its containerd (sourced by
# scripts/cluster.sh; needs $CTR_ADDR, $WORK, $REPO, log, die).
#   ikontainer.local/pause:1     the sandbox image: a static C program (scripts/cluster/pause.c)
#   ikontainer.local/busybox:1   workloads: Debian's busybox-static
#   ikontainer:test              the agent: see agent_image_tar

PAUSE_IMAGE=ikontainer.local/pause:1
BUSYBOX_IMAGE=ikontainer.local/busybox:1
AGENT_IMAGE=${IKONTAINER_K8S_AGENT_IMAGE:-ikontainer:test}

ctr_k8s() { ctr --address "$CTR_ADDR" --namespace k8s.io "$@"; }

import_tar() { # TAR: pinned, so the kubelet's image GC never removes it (nothing could pull it back)
  ctr_k8s images import --no-unpack=false "$1" >/dev/null 2>&1 || ctr_k8s images import "$1" >/dev/null ||
    die "could not import $1 into containerd"
  ref=$2
  case $ref in */*) ;; *) ref=docker.io/library/$ref ;; esac # how the kubelet spells a short name
  ctr_k8s images label "$ref" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
}

pause_image_tar() { # OUT
  d=$WORK/img/pause
  rm -rf "$d" && mkdir -p "$d/root"
  gcc -Os -static -o "$d/root/pause" "$REPO/scripts/cluster/pause.c" || die "gcc could not build the pause program"
  python3 "$REPO/scripts/cluster/image-tar.py" "$d/root" "$PAUSE_IMAGE" "$1" --entrypoint '["/pause"]'
}

busybox_image_tar() { # OUT
  d=$WORK/img/busybox
  rm -rf "$d" && mkdir -p "$d/root/bin" "$d/root/tmp" "$d/root/etc"
  cp /bin/busybox "$d/root/bin/busybox"
  for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -s busybox "$d/root/bin/$a"; done
  chmod 1777 "$d/root/tmp"
  printf 'root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n' >"$d/root/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\n' >"$d/root/etc/group"
  python3 "$REPO/scripts/cluster/image-tar.py" "$d/root" "$BUSYBOX_IMAGE" "$1" --cmd '["sh"]'
}

# The agent image as a docker-save tarball named $AGENT_IMAGE. When the image script exists (scripts/docker.sh:
# dockerd + `docker build` of the repository's Dockerfile), that is used: the image users get. Until then, and
# on machines without it, a stand-in with the same layout is assembled from this machine's Node binary (and
# the libraries it links), busybox for /bin/sh, the built dist/ and the production dependencies.
agent_image_tar() { # OUT
  if [ -f "$REPO/scripts/docker.sh" ] && grep -q 'save' "$REPO/scripts/docker.sh"; then
    log "agent image: building the Dockerfile with scripts/docker.sh"
    sh "$REPO/scripts/docker.sh" save "$1" >&2 || die "scripts/docker.sh save failed"
    AGENT_IMAGE_KIND=dockerfile
    return
  fi
  log "agent image: scripts/docker.sh not there; assembling a stand-in from this machine's node and dist/"
  AGENT_IMAGE_KIND=stand-in
  d=$WORK/img/agent
  rm -rf "$d" && mkdir -p "$d/root/app" "$d/root/bin" "$d/root/etc" "$d/root/tmp" "$d/root/var/lib/ikontainer"
  node_bin=$(command -v node)
  mkdir -p "$d/root/usr/local/bin"
  cp "$node_bin" "$d/root/usr/local/bin/node"
  for lib in $(ldd "$node_bin" | sed -n 's#.*=> \(/[^ ]*\).*#\1#p; s#^[[:space:]]*\(/[^ ]*\) .*#\1#p'); do
    mkdir -p "$d/root$(dirname "$lib")"
    cp -L "$lib" "$d/root$lib"
  done
  cp /bin/busybox "$d/root/bin/busybox"
  for a in sh chown chmod ls cat id; do ln -s busybox "$d/root/bin/$a"; done
  [ -f "$REPO/dist/cli/main.js" ] || (cd "$REPO" && npx tsc -p tsconfig.build.json) || die "tsc build failed"
  cp -r "$REPO/dist" "$d/root/app/dist"
  cp "$REPO/package.json" "$REPO/package-lock.json" "$d/root/app/"
  (cd "$d/root/app" && npm ci --omit=dev --prefer-offline --no-audit --no-fund --ignore-scripts >/dev/null 2>&1) ||
    die "npm ci --omit=dev failed for the stand-in agent image"
  rm -f "$d/root/app/package-lock.json"
  printf 'root:x:0:0:root:/:/bin/sh\nikontainer:x:10001:10001::/var/lib/ikontainer:/bin/sh\n' >"$d/root/etc/passwd"
  printf 'root:x:0:\nikontainer:x:10001:\n' >"$d/root/etc/group"
  chmod 1777 "$d/root/tmp"
  chown 10001:10001 "$d/root/var/lib/ikontainer"
  python3 "$REPO/scripts/cluster/image-tar.py" "$d/root" "$AGENT_IMAGE" "$1" \
    --entrypoint '["node","/app/dist/cli/main.js"]' --cmd '["--help"]' --user 10001:10001 \
    --workdir /var/lib/ikontainer --env NODE_ENV=production
}

import_images() {
  mkdir -p "$WORK/img"
  pause_image_tar "$WORK/img/pause.tar" && import_tar "$WORK/img/pause.tar" "$PAUSE_IMAGE"
  busybox_image_tar "$WORK/img/busybox.tar" && import_tar "$WORK/img/busybox.tar" "$BUSYBOX_IMAGE"
  import_agent_image
}

# Re-imports only the agent image (after a code change): scripts/cluster.sh agent-image
import_agent_image() {
  mkdir -p "$WORK/img"
  agent_image_tar "$WORK/img/agent.tar"
  import_tar "$WORK/img/agent.tar" "$AGENT_IMAGE"
  echo "$AGENT_IMAGE_KIND" >"$WORK/agent-image.kind"
  rm -rf "$WORK/img/agent" "$WORK/img/agent.tar"
  tag_example_images
}

# The kustomize examples name `ikontainer` (newTag from deploy/kustomize/sidecar) and `busybox:1.36` with the
# default pull policy; tagged here under the names the kubelet resolves them to, so they run as written and
# nothing is pulled (pods reach nothing outside this machine). Stands in for a registry, nothing else.
tag_example_images() {
  tag=$(sed -n 's/^ *newTag: *//p' "$REPO/deploy/kustomize/sidecar/kustomization.yaml" | head -n 1)
  for pair in "$AGENT_IMAGE=ikontainer:${tag:-latest}" "$BUSYBOX_IMAGE=busybox:1.36"; do
    src=${pair%%=*} dst=docker.io/library/${pair#*=}
    case $src in */*) ;; *) src=docker.io/library/$src ;; esac
    ctr_k8s images tag --force "$src" "$dst" >/dev/null || die "could not tag $src as $dst"
    ctr_k8s images label "$dst" io.cri-containerd.pinned=pinned >/dev/null 2>&1 || true
  done
}
