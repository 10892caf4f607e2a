#!/bin/bash
# Runs inside a booted Debian 12 container (systemd as PID 1), started by run.sh: installs the
# .deb and operates p2pd the way an operator would. The last line says PASSED or the log shows
# the failing step.
exec > /opt/out/log 2>&1
set -euxo pipefail

wait_for() { # wait_for SECONDS COMMAND...: poll until the command succeeds
    local deadline=$((SECONDS + $1)); shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || { echo "timed out: $*"; return 1; }
        sleep 0.2
    done
}
json_field() { sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"; }

# A short watchdog for the test only, so a stopped daemon is noticed within seconds.
mkdir -p /etc/systemd/system/p2pd.service.d
printf '[Service]\nWatchdogSec=4s\n' > /etc/systemd/system/p2pd.service.d/test.conf

# Install: creates the user, enables and starts the service (returns once it is ready).
dpkg -i /opt/t/p2pd.deb
getent group p2pd
systemctl is-active p2pd
systemctl status p2pd --no-pager | grep -F 'Status: "'
p2pctl status

# Root and members of p2pd may use the control socket; others get exit 3 and the hint.
useradd -m -G p2pd alice
useradd -m bob
su alice -c 'p2pctl status'
set +e; su bob -c 'p2pctl status' 2> /tmp/bob.err; rc=$?; set -e
[ "$rc" -eq 3 ]
grep -F 'group p2pd' /tmp/bob.err

# Native journald entries with structured fields.
journalctl -u p2pd -o json --no-pager | grep -F '"SYSLOG_IDENTIFIER":"p2pd"' | grep -F '"EVENT":"ready"'

# Reload applies a changed limit.
printf '[limits]\nmax_inbound = 77\n' > /etc/p2pd/p2pd.toml
systemctl reload p2pd
p2pctl limits | grep -E '^max_inbound +77 '

# The watchdog restarts a stopped daemon; identity and bans survive.
p2pctl ban 192.0.2.1 --reason system-test
peer=$(p2pctl --json status | json_field peer_id)
pid=$(systemctl show -p MainPID --value p2pd)
kill -STOP "$pid"
wait_for 60 sh -c "[ \"\$(systemctl show -p MainPID --value p2pd)\" != \"$pid\" ] && [ \"\$(systemctl show -p MainPID --value p2pd)\" != 0 ]"
wait_for 30 p2pctl status
[ "$(p2pctl --json status | json_field peer_id)" = "$peer" ]
p2pctl --json bans | grep -F 192.0.2.1
journalctl -u p2pd --no-pager | grep -i watchdog

# A second p2pd run by hand (as alice) joins the service.
addr=$(p2pctl --json status | sed -n 's/.*"listen_addrs":\["\([^"]*tcp[^"]*\)".*/\1/p')
[ -n "$addr" ] || addr=$(p2pctl --json status | grep -o '/ip4/[^"]*/tcp/[0-9]*' | head -n1)
printf '' > /tmp/empty.toml
su alice -c "p2pd --config /tmp/empty.toml --data-dir /home/alice/p2pd --control-socket /home/alice/p2pd.sock --listen /ip4/127.0.0.1/tcp/0 --metrics-addr 127.0.0.1:0 --bootstrap $addr/p2p/$peer > /home/alice/p2pd.log 2>&1 &"
wait_for 30 su alice -c 'p2pctl --socket /home/alice/p2pd.sock status'
alice_peer=$(su alice -c 'p2pctl --socket /home/alice/p2pd.sock --json status' | json_field peer_id)
wait_for 30 sh -c "p2pctl --json peers | grep -F $alice_peer"

# A clean stop leaves a fresh routing table.
rm -f /var/lib/p2pd/routing_table.json
systemctl stop p2pd
[ "$(systemctl show -p Result --value p2pd)" = success ]
# Written at shutdown (it was removed just before the stop).
test -s /var/lib/p2pd/routing_table.json
grep -F '"peers"' /var/lib/p2pd/routing_table.json

# Hardening as systemd itself sees it.
systemd-analyze security --threshold=15 p2pd.service | tail -n 1

# Remove keeps the state; purge deletes it.
dpkg -r p2pd
test -f /var/lib/p2pd/identity.key
dpkg -P p2pd
test ! -e /var/lib/p2pd

echo "SYSTEM TEST PASSED"
