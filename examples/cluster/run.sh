#!/usr/bin/env bash
# A replicated Ferry cluster on one host: three NameServers that are also
# the controllers (ferry namesrv --controller, one Raft group) and one
# broker group of three (group-a, ids 0, 1, 2) in sync mode with
# min-insync-replicas 2. Ctrl-C stops everything.
#
#   examples/cluster/run.sh [DIR]      # DIR: data and logs, default ./ferry-cluster
#
# The ports are fixed (README.md lists them). FERRY names the ferry binary;
# without it, the ferry on PATH is used, else one is built from this
# repository into DIR. Running the script again on the same DIR restarts the
# same cluster: the controllers keep their state, the brokers their logs,
# and the cluster secret its file.
set -euo pipefail

dir=${1:-./ferry-cluster}
mkdir -p "$dir/logs"
dir=$(cd "$dir" && pwd)

if [[ -n ${FERRY:-} ]]; then
	ferry=$FERRY
elif command -v ferry >/dev/null 2>&1; then
	ferry=$(command -v ferry)
else
	repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
	echo "building ferry from $repo into $dir/ferry"
	(cd "$repo" && go build -o "$dir/ferry" ./cmd/ferry)
	ferry=$dir/ferry
fi

# The secret the NameServers, controllers and brokers share: they sign
# registrations, controller requests and replication handshakes with it.
secret=$dir/cluster-secret
if [[ ! -s $secret ]]; then
	(umask 077 && head -c 32 /dev/urandom | base64 >"$secret")
	echo "created the cluster secret $secret (mode 0600)"
fi
chmod 600 "$secret"

namesrvs=127.0.0.1:9876,127.0.0.1:9886,127.0.0.1:9896
controllers=127.0.0.1:9878,127.0.0.1:9888,127.0.0.1:9898
peers=1=127.0.0.1:9879,2=127.0.0.1:9889,3=127.0.0.1:9899

pids=()
stop() {
	local rc=$?
	trap - INT TERM EXIT
	if ((${#pids[@]})); then
		echo
		echo "stopping ${#pids[@]} processes"
		kill -TERM "${pids[@]}" 2>/dev/null || true
		wait "${pids[@]}" 2>/dev/null || true
	fi
	exit "$rc"
}
trap stop INT TERM EXIT

# start NAME ARGS…: runs ferry ARGS in the background, its log in
# DIR/logs/NAME.log, its command in DIR/logs/NAME.cmd (to start it again
# by hand after stopping it: bash DIR/logs/NAME.cmd).
start() {
	local name=$1
	shift
	{
		printf 'exec'
		printf ' %q' "$ferry" "$@" --cluster-secret-file "$secret"
		echo
	} >"$dir/logs/$name.cmd"
	"$ferry" "$@" --cluster-secret-file "$secret" >>"$dir/logs/$name.log" 2>&1 &
	pids+=("$!")
	echo "started $name (pid $!): $dir/logs/$name.log"
}

# ready NAME HTTP: waits until the process answers ready on its HTTP port.
ready() {
	local name=$1 http=$2
	for _ in $(seq 1 300); do
		if "$ferry" health --http "$http" >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	echo "$name is not ready after 30 s; its log:" >&2
	tail -n 20 "$dir/logs/$name.log" >&2
	exit 1
}

# Ports, by node: the NameServer, the controller's RPC and Raft listeners,
# the HTTP of metrics and health; a broker's native, replication, MQTT and
# HTTP listeners.
ns_port=(9876 9886 9896)
ctl_port=(9878 9888 9898)
ns_http=(8180 8181 8182)
native_port=(10911 10921 10931)
repl_port=(10912 10922 10932)
mqtt_port=(1883 1884 1885)
amqp_port=(5682 5692 5702) # 5672 is left to a RabbitMQ on the same host
broker_http=(8080 8081 8082)

for i in 1 2 3; do
	start "controller-$i" namesrv --controller --node-id "$i" --raft-peers "$peers" \
		--namesrv-addr "127.0.0.1:${ns_port[i - 1]}" --controller-addr "127.0.0.1:${ctl_port[i - 1]}" \
		--http-addr "127.0.0.1:${ns_http[i - 1]}" --data-dir "$dir/controller-$i"
done
for i in 1 2 3; do
	ready "controller-$i" "127.0.0.1:${ns_http[i - 1]}"
done

broker_pids=()
for id in 0 1 2; do
	start "broker-$id" broker --namesrv "$namesrvs" --controllers "$controllers" \
		--broker-name group-a --broker-id "$id" --data-dir "$dir/broker-$id" \
		--native-addr "127.0.0.1:${native_port[id]}" --replication-addr "127.0.0.1:${repl_port[id]}" \
		--replication-mode sync --min-insync-replicas 2 \
		--mqtt-addr "127.0.0.1:${mqtt_port[id]}" --mqtt-ws-addr off --amqp-addr "127.0.0.1:${amqp_port[id]}" \
		--http-addr "127.0.0.1:${broker_http[id]}"
	broker_pids+=("${pids[-1]}")
done
for id in 0 1 2; do
	ready "broker-$id" "127.0.0.1:${broker_http[id]}"
done

cat <<EOF

A sync group of three (group-a) behind three NameServer-controllers is running.
Data, logs and the cluster secret are under $dir.

  # the brokers and the group: epoch, master, in-sync set, each broker's lag
  $ferry cluster list --namesrv $namesrvs \\
      --controllers $controllers --cluster-secret-file $secret

  # send and read (the clients find the master through the NameServers)
  $ferry produce --namesrv $namesrvs --topic Orders --count 1000 --size 128
  $ferry consume --namesrv $namesrvs --topic Orders --group readers

  # fail over: kill -9 the master (cluster list's MASTER column gives its id)
  # and run cluster list again: another is master of a new epoch within
  # seconds; start the old one again (bash $dir/logs/broker-N.cmd, in
  # another terminal) and it rejoins as a replica
  #   broker-0: pid ${broker_pids[0]}, native 127.0.0.1:${native_port[0]}, MQTT ${mqtt_port[0]}, AMQP ${amqp_port[0]}
  #   broker-1: pid ${broker_pids[1]}, native 127.0.0.1:${native_port[1]}, MQTT ${mqtt_port[1]}, AMQP ${amqp_port[1]}
  #   broker-2: pid ${broker_pids[2]}, native 127.0.0.1:${native_port[2]}, MQTT ${mqtt_port[2]}, AMQP ${amqp_port[2]}

Ctrl-C stops everything.
EOF

wait
