# Complete teardown of the test cluster (sourced by scripts/cluster.sh): everything `up` started, by recorded
# PID, and everything those processes left behind. Safe to run twice, and after a half-finished `up`.

stop_pid() { # PID [GRACE-SECONDS]: SIGTERM, SIGKILL after the grace time
  pid=$1
  grace=${2:-10}
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  i=0
  while kill -0 "$pid" 2>/dev/null && [ "$i" -lt "$((grace * 10))" ]; do
    sleep 0.1
    i=$((i + 1))
  done
  kill -KILL "$pid" 2>/dev/null || true
  # a killed process can stay a zombie until its parent notices; wait for /proc to forget it
  i=0
  while [ -d "/proc/$pid" ] && [ "$i" -lt 50 ] && ! grep -q '^State:.*Z' "/proc/$pid/status" 2>/dev/null; do
    sleep 0.1
    i=$((i + 1))
  done
}

stop_recorded() { # NAME [GRACE]
  [ -f "$RUN/$1.pid" ] || return 0
  stop_pid "$(cat "$RUN/$1.pid")" "${2:-10}"
  rm -f "$RUN/$1.pid"
}

# Container processes and their shims, from the PIDs containerd recorded in its state folder.
stop_workloads() {
  tasks=$RUN/containerd/io.containerd.runtime.v2.task
  [ -d "$tasks" ] || return 0
  for f in "$tasks"/*/*/init.pid; do [ -f "$f" ] && kill -KILL "$(cat "$f")" 2>/dev/null; done
  for f in "$tasks"/*/*/shim.pid; do [ -f "$f" ] && stop_pid "$(cat "$f")" 5; done
  return 0
}

unmount_under() { # REGEX...: mount points matching, deepest first
  for prefix in "$@"; do
    awk '{print $5}' /proc/self/mountinfo | sed 's/\\040/ /g' | grep -E "^$prefix" | sort -r |
      while IFS= read -r m; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true; done
  done
}

remove_iptables() {
  for cmd in iptables ip6tables; do
    command -v "$cmd" >/dev/null 2>&1 || continue
    for table in filter nat mangle; do
      chains=$("$cmd" -t "$table" -S 2>/dev/null | sed -n 's/^-N \(KUBE-[^ ]*\|'"$CHAIN"'\)$/\1/p')
      for c in $chains; do
        # drop every jump to it from other chains, then the chain
        "$cmd" -t "$table" -S 2>/dev/null | grep -- "-j $c\( \|$\)" | grep -v "^-A $c " |
          sed 's/^-A /-D /' | while IFS= read -r rule; do
            # shellcheck disable=SC2086
            eval "$cmd -t $table $rule" 2>/dev/null || true
          done
      done
      for c in $chains; do "$cmd" -t "$table" -F "$c" 2>/dev/null || true; done
      for c in $chains; do "$cmd" -t "$table" -X "$c" 2>/dev/null || true; done
    done
  done
}

remove_cgroups() {
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/kubepods.slice /sys/fs/cgroup/kubepods; do
    [ -d "$d" ] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
}

restore_sysctls() {
  [ -f "$RUN/sysctl.saved" ] || return 0
  while IFS= read -r kv; do sysctl -q -w "$kv" >/dev/null 2>&1 || true; done <"$RUN/sysctl.saved"
}

down() {
  stop_recorded kubelet 10
  stop_workloads
  stop_recorded kube-scheduler 5
  stop_recorded kube-controller-manager 5
  stop_recorded kube-apiserver 10
  stop_recorded etcd 10
  stop_recorded containerd 10
  # the kubelet bind-mounts its root folder onto itself (shared propagation): that mount goes too
  unmount_under '/var/lib/kubelet(/|$)' "$RUN/" "$WORK/" /run/netns/cni- /run/containerd/io.containerd
  rm -f /run/netns/cni-* 2>/dev/null || true
  ip link del "$BRIDGE" 2>/dev/null || true
  ip route del blackhole "$SVC_CIDR" 2>/dev/null || true
  remove_iptables
  remove_cgroups
  restore_sysctls
  rm -rf /var/lib/cni/results/ikontainer-k8s-* /var/lib/kubelet /var/log/pods /var/log/containers ||
    log "could not remove everything under /var/lib/kubelet or /var/log (see mounts above)"
  if [ -d "$WORK/logs" ]; then rm -rf "$BASE/logs.last" && cp -r "$WORK/logs" "$BASE/logs.last"; fi
  rm -rf "$RUN" "$WORK"
  log "down"
}
