#!/bin/sh
# A real single-node Kubernetes on this machine, for the cluster tests and for trying the chart.
#
#   scripts/cluster.sh build     build Kubernetes + etcd once per machine (scripts/cluster-build.sh; ~8 min cold)
#                                and install Debian's containerd, CNI plugins and busybox-static when missing
#   scripts/cluster.sh up        certificates, etcd, kube-apiserver, controller-manager, scheduler, containerd,
#                                kubelet; imports the pause, busybox and agent images; waits for the node and
#                                the default service account. Prints `export KUBECONFIG=…`.
#   scripts/cluster.sh down      stops everything it started by recorded PID and removes what they left
#   scripts/cluster.sh status    exit 0 when the node is Ready
#   scripts/cluster.sh agent-image   rebuild and re-import the agent image into the running cluster
#   scripts/cluster.sh env       the shell variables tests use (KUBECONFIG, images, addresses)
#   scripts/cluster.sh restart-apiserver   stop the API server, write a key into etcd and compact etcd to its
#                                newest revision, start the API server again: every watch's resourceVersion is
#                                then too old (410 Gone), as after a long API outage (the cluster test's relist)
#
# Containment: pods get addresses from a small range on the bridge $BRIDGE (default 10.244.77.2-.9 of a /28,
# so host-local hands a freed IP to a new pod within a few pods), routes only to that subnet and the service
# range, no default route, no masquerade; forwarding out of the bridge is dropped; the service range is
# blackholed on the host and only the API VIP (10.96.0.1:443) is DNATed, to the API server on the bridge's
# gateway address. Services the pods need (Elasticsearch, fluentd, Knot) listen on that gateway address.
# Root only. Environment: IKONTAINER_K8S_BASE (/var/tmp/ikontainer-k8s), IKONTAINER_K8S_POD_SUBNET, ..._POD_RANGE.
set -eu
cd "$(dirname "$0")/.."
REPO=$(pwd)

K8S_VERSION=${IKONTAINER_K8S_VERSION:-v1.34.4}
ETCD_VERSION=${IKONTAINER_ETCD_VERSION:-v3.6.17}
BASE=${IKONTAINER_K8S_BASE:-/var/tmp/ikontainer-k8s}
BIN=$BASE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin
WORK=$BASE/cluster                # certificates, configs, etcd data, containerd root, logs (removed by down)
RUN=/run/ikontainer-k8s           # PIDs, sockets, containerd state
BRIDGE=ikon0
POD_SUBNET=${IKONTAINER_K8S_POD_SUBNET:-10.244.77.0/28}
GATEWAY=${POD_SUBNET%.*/*}.1
POD_RANGE=${IKONTAINER_K8S_POD_RANGE:-${POD_SUBNET%.*/*}.2-${POD_SUBNET%.*/*}.9}
SVC_CIDR=10.96.0.0/16
API_VIP=10.96.0.1
API_PORT=6443
ETCD_PORT=${IKONTAINER_K8S_ETCD_PORT:-23790}
NODE_NAME=ikontainer-node
CTR_ADDR=$RUN/containerd.sock
KUBECONFIG_ADMIN=$WORK/admin.kubeconfig
CHAIN=IKONTAINER-K8S
SAVED_SYSCTLS="kernel.panic kernel.panic_on_oops vm.overcommit_memory net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables"

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }
need_root() { [ "$(id -u)" -eq 0 ] || die "must run as root (it starts a kubelet, containerd and edits iptables)"; }

. "$REPO/scripts/cluster/images.sh"
. "$REPO/scripts/cluster/teardown.sh"

apt_install() {
  missing=""
  for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
  [ -z "$missing" ] && return 0
  log "installing$missing"
  # shellcheck disable=SC2086
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null 2>&1 ||
    { apt-get update -q >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null; } ||
    die "apt-get install$missing failed"
}

build() {
  need_root
  apt_install containerd containernetworking-plugins busybox-static openssl iptables iproute2 gcc libc6-dev
  # containerd comes with a systemd unit; this cluster runs its own instance with its own config and socket
  sh "$REPO/scripts/cluster-build.sh" >/dev/null
}

kubectl_() { "$BIN/kubectl" --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }

# --- certificates (openssl): one CA; the API server's serving cert; client certs for admin and the node ---
certs() {
  d=$WORK/pki
  mkdir -p "$d"
  cd "$d"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 -subj "/CN=ikontainer-test-ca" 2>/dev/null
  cat >apiserver.ext <<EXT
subjectAltName=IP:$GATEWAY,IP:$API_VIP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:localhost
extendedKeyUsage=serverAuth
EXT
  printf 'extendedKeyUsage=clientAuth\n' >client.ext
  sign() { # NAME SUBJECT EXTFILE
    openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 30 -extfile "$3" 2>/dev/null
  }
  sign apiserver "/CN=kube-apiserver" apiserver.ext
  sign admin "/O=system:masters/CN=ikontainer-admin" client.ext
  sign node "/O=system:nodes/CN=system:node:$NODE_NAME" client.ext
  openssl genrsa -out sa.key 2048 2>/dev/null
  openssl rsa -in sa.key -pubout -out sa.pub 2>/dev/null
  cd "$REPO"
  kubeconfig admin >"$KUBECONFIG_ADMIN"
  kubeconfig node >"$WORK/node.kubeconfig"
}

kubeconfig() { # CERT-NAME
  cat <<KC
apiVersion: v1
kind: Config
clusters:
- name: ikontainer
  cluster: {server: "https://$GATEWAY:$API_PORT", certificate-authority: "$WORK/pki/ca.crt"}
users:
- name: $1
  user: {client-certificate: "$WORK/pki/$1.crt", client-key: "$WORK/pki/$1.key"}
contexts:
- name: ikontainer
  context: {cluster: ikontainer, user: $1}
current-context: ikontainer
KC
}

# --- network: bridge, containment rules ---
network_up() {
  for s in $SAVED_SYSCTLS; do
    v=$(sysctl -n "$s" 2>/dev/null) && echo "$s=$v"
  done >"$RUN/sysctl.saved"
  ip link add "$BRIDGE" type bridge 2>/dev/null || true
  ip addr replace "$GATEWAY/${POD_SUBNET#*/}" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  ip route replace blackhole "$SVC_CIDR"
  iptables -t nat -N "$CHAIN" 2>/dev/null || iptables -t nat -F "$CHAIN"
  iptables -t nat -A "$CHAIN" -d "$API_VIP/32" -p tcp --dport 443 -j DNAT --to-destination "$GATEWAY:$API_PORT"
  iptables -t nat -C PREROUTING -j "$CHAIN" 2>/dev/null || iptables -t nat -I PREROUTING -j "$CHAIN"
  iptables -N "$CHAIN" 2>/dev/null || iptables -F "$CHAIN"
  iptables -A "$CHAIN" -i "$BRIDGE" -o "$BRIDGE" -j ACCEPT
  iptables -A "$CHAIN" -i "$BRIDGE" -j DROP
  iptables -A "$CHAIN" -o "$BRIDGE" -j DROP
  iptables -C FORWARD -j "$CHAIN" 2>/dev/null || iptables -I FORWARD -j "$CHAIN"
  mkdir -p "$WORK/cni/net.d"
  range_start=${POD_RANGE%-*}
  range_end=${POD_RANGE#*-}
  cat >"$WORK/cni/net.d/10-ikontainer.conflist" <<CNI
{
  "cniVersion": "0.4.0",
  "name": "ikontainer-k8s",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$WORK/cni/ipam",
        "ranges": [[{"subnet": "$POD_SUBNET", "rangeStart": "$range_start", "rangeEnd": "$range_end", "gateway": "$GATEWAY"}]],
        "routes": [{"dst": "$SVC_CIDR"}]
      }
    }
  ]
}
CNI
}

start_bg() { # NAME CMD...: starts a daemon, records its PID in $RUN/NAME.pid, output in $WORK/logs/NAME.log
  name=$1
  shift
  "$@" </dev/null >"$WORK/logs/$name.log" 2>&1 &
  echo $! >"$RUN/$name.pid"
}

wait_for() { # WHAT SECONDS CMD...
  what=$1
  n=$2
  shift 2
  i=0
  while ! "$@" >/dev/null 2>&1; do
    i=$((i + 1))
    [ "$i" -le "$((n * 4))" ] || die "timed out waiting for $what (logs: $WORK/logs)"
    sleep 0.25
  done
}

alive() { [ -f "$RUN/$1.pid" ] && kill -0 "$(cat "$RUN/$1.pid")" 2>/dev/null; }

apiserver_up() {
  p=$WORK/pki
  start_bg kube-apiserver "$BIN/kube-apiserver" --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address "$GATEWAY" --advertise-address "$GATEWAY" --secure-port "$API_PORT" \
    --service-cluster-ip-range "$SVC_CIDR" --authorization-mode Node,RBAC \
    --client-ca-file "$p/ca.crt" --tls-cert-file "$p/apiserver.crt" --tls-private-key-file "$p/apiserver.key" \
    --kubelet-client-certificate "$p/admin.crt" --kubelet-client-key "$p/admin.key" \
    --service-account-key-file "$p/sa.pub" --service-account-signing-key-file "$p/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --enable-admission-plugins NodeRestriction --allow-privileged=true --profiling=false \
    --endpoint-reconciler-type none --kubelet-preferred-address-types InternalIP
  wait_for kube-apiserver 120 kubectl_ get --raw /readyz
}

control_plane_up() {
  start_bg etcd "$BIN/etcd" --name ikontainer --data-dir "$WORK/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 1))" \
    --initial-cluster "ikontainer=http://127.0.0.1:$((ETCD_PORT + 1))" \
    --quota-backend-bytes 1073741824
  wait_for etcd 30 "$BIN/etcdctl" --endpoints "127.0.0.1:$ETCD_PORT" endpoint health
  p=$WORK/pki
  apiserver_up
  start_bg kube-controller-manager "$BIN/kube-controller-manager" --kubeconfig "$KUBECONFIG_ADMIN" \
    --authentication-kubeconfig "$KUBECONFIG_ADMIN" --authorization-kubeconfig "$KUBECONFIG_ADMIN" \
    --bind-address 127.0.0.1 --service-account-private-key-file "$p/sa.key" --root-ca-file "$p/ca.crt" \
    --cluster-signing-cert-file "$p/ca.crt" --cluster-signing-key-file "$p/ca.key" \
    --use-service-account-credentials --leader-elect=false --profiling=false \
    --service-cluster-ip-range "$SVC_CIDR"
  start_bg kube-scheduler "$BIN/kube-scheduler" --kubeconfig "$KUBECONFIG_ADMIN" \
    --authentication-kubeconfig "$KUBECONFIG_ADMIN" --authorization-kubeconfig "$KUBECONFIG_ADMIN" \
    --bind-address 127.0.0.1 --leader-elect=false --profiling=false
}

containerd_up() {
  mkdir -p "$WORK/containerd" "$RUN/containerd"
  cat >"$WORK/containerd.toml" <<TOML
version = 2
root = "$WORK/containerd"
state = "$RUN/containerd"
[grpc]
  address = "$CTR_ADDR"
[ttrpc]
  address = "$CTR_ADDR.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$WORK/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  # root on these VMs cannot lower oom_score_adj: without this every sandbox fails to start
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$WORK/cni/net.d"
TOML
  start_bg containerd containerd --config "$WORK/containerd.toml"
  wait_for containerd 30 ctr --address "$CTR_ADDR" version
}

kubelet_up() {
  printf 'nameserver 127.0.0.1\n' >"$WORK/resolv.conf"
  cat >"$WORK/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $GATEWAY
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: "$WORK/pki/ca.crt"}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTR_ADDR
imageServiceEndpoint: unix://$CTR_ADDR
resolvConf: "$WORK/resolv.conf"
# Cluster DNS: pods get "nameserver $GATEWAY" and the cluster.local search list, as with CoreDNS. Nothing
# answers there until a resolver listens on $GATEWAY:53 (the tests start a real Knot serving cluster.local).
clusterDNS: ["$GATEWAY"]
clusterDomain: cluster.local
# small, so a test can make the kubelet rotate a container's log
containerLogMaxSize: 1Mi
containerLogMaxFiles: 3
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
serverTLSBootstrap: false
YAML
  start_bg kubelet "$BIN/kubelet" --config "$WORK/kubelet.yaml" --kubeconfig "$WORK/node.kubeconfig" \
    --hostname-override "$NODE_NAME" --node-ip "$GATEWAY"
  wait_for "node $NODE_NAME Ready" 120 sh -c \
    "'$BIN/kubectl' --kubeconfig '$KUBECONFIG_ADMIN' get node $NODE_NAME -o jsonpath='{.status.conditions[?(@.type==\"Ready\")].status}' | grep -qx True"
}

up() {
  need_root
  if alive kubelet && status >/dev/null 2>&1; then
    log "already up"
    env_vars
    return 0
  fi
  [ -d "$RUN" ] && { log "a previous cluster was not torn down: tearing it down first"; down; }
  build
  mkdir -p "$RUN" "$WORK/logs"
  trap 'log "up failed: tearing down (logs kept in $BASE/logs.failed)"; rm -rf "$BASE/logs.failed"; cp -r "$WORK/logs" "$BASE/logs.failed" 2>/dev/null; down' EXIT
  certs
  network_up
  control_plane_up
  containerd_up
  import_images
  kubelet_up
  wait_for "service account default/default" 60 kubectl_ -n default get serviceaccount default
  wait_for "configmap kube-root-ca.crt" 60 kubectl_ -n default get configmap kube-root-ca.crt
  trap - EXIT
  log "up: node $NODE_NAME Ready ($K8S_VERSION), pods on $BRIDGE $POD_SUBNET range $POD_RANGE"
  env_vars
}

restart_apiserver() {
  stop_recorded kube-apiserver 20
  # a revision newer than any watcher's, then nothing older is kept: old resourceVersions answer 410 Gone
  "$BIN/etcdctl" --endpoints "127.0.0.1:$ETCD_PORT" put /ikontainer-test/relist "$(date +%s)" >/dev/null
  rev=$("$BIN/etcdctl" --endpoints "127.0.0.1:$ETCD_PORT" endpoint status -w json |
    sed -n 's/.*"revision":\([0-9]*\).*/\1/p')
  "$BIN/etcdctl" --endpoints "127.0.0.1:$ETCD_PORT" compact "$rev" >/dev/null
  apiserver_up
  log "restart-apiserver: etcd compacted at revision $rev, API server up again"
}

status() {
  alive kubelet && alive kube-apiserver || { echo "down"; return 1; }
  kubectl_ get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' | grep -qx True ||
    { echo "node not Ready"; return 1; }
  echo "up: $K8S_VERSION, node $NODE_NAME, agent image $AGENT_IMAGE ($(cat "$WORK/agent-image.kind" 2>/dev/null))"
}

env_vars() {
  echo "export KUBECONFIG=$KUBECONFIG_ADMIN"
  echo "export IKONTAINER_K8S_BIN=$BIN"
  echo "export IKONTAINER_K8S_NODE=$NODE_NAME"
  echo "export IKONTAINER_K8S_GATEWAY=$GATEWAY"
  echo "export IKONTAINER_K8S_POD_RANGE=$POD_RANGE"
  echo "export IKONTAINER_K8S_AGENT_IMAGE=$AGENT_IMAGE"
  echo "export IKONTAINER_K8S_AGENT_IMAGE_KIND=$(cat "$WORK/agent-image.kind" 2>/dev/null || echo unknown)"
  echo "export IKONTAINER_K8S_BUSYBOX_IMAGE=$BUSYBOX_IMAGE"
  echo "export IKONTAINER_K8S_VERSION=$K8S_VERSION"
}

case "${1:-}" in
build) build && echo "$BIN" ;;
up) up ;;
down) need_root && down ;;
status) status ;;
env) env_vars ;;
agent-image) need_root && alive containerd && import_agent_image ;;
restart-apiserver) need_root && alive kube-apiserver && restart_apiserver ;;
*) die "usage: scripts/cluster.sh build|up|down|status|env|agent-image|restart-apiserver" ;;
esac
