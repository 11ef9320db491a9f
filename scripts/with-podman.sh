#!/bin/sh
# with-podman.sh CMD [ARG...] runs CMD with a container engine for the
# testcontainers suites (firehosetest): a podman API service on a socket in
# .tools/podman, DOCKER_HOST pointing at it, and the Ryuk reaper off (no
# registry can be pulled from; the tests remove their containers). Without
# podman, CMD runs as it is and those tests skip, saying why.
set -eu
dir="${TOOLS:-$(pwd)/.tools}/podman"
if ! command -v podman >/dev/null 2>&1; then
	echo "with-podman: podman is not installed; the container tests will skip" >&2
	exec "$@"
fi
mkdir -p "$dir"
# runc as the runtime; the host's network (containers use loopback only);
# cgroupfs and a file event log, which need no systemd; and no ulimits of
# podman's own: its default (nofile 1048576) is above what a sandbox allows,
# and setting it fails every container, so they keep the service's limits.
cat >"$dir/containers.conf" <<CONF
[containers]
netns = "host"
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
export CONTAINERS_CONF="$dir/containers.conf"
sock="$dir/podman.sock"
rm -f "$sock"
podman system service --time=0 "unix://$sock" >"$dir/service.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true' EXIT INT TERM
i=0
while [ ! -S "$sock" ]; do
	i=$((i + 1))
	if [ "$i" -gt 100 ]; then
		echo "with-podman: podman system service did not start; see $dir/service.log" >&2
		exit 1
	fi
	sleep 0.1
done
export DOCKER_HOST="unix://$sock" TESTCONTAINERS_RYUK_DISABLED=true
"$@"
