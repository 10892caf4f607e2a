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

# Install: creates the users, enables and starts the service and both sockets, quietly.
dpkg -i /opt/t/p2pd.deb 2>&1 | tee /tmp/install.log
! grep -E -i 'fail|refusing|could not' /tmp/install.log
getent group p2pd
getent group p2pd-ro
systemctl is-active p2pd.socket p2pd-query.socket p2pd-handoff.socket p2pd-gate p2pd
! journalctl --no-pager -u p2pd.socket -u p2pd-query.socket -u p2pd-handoff.socket -u p2pd-gate | grep -i -E 'refusing|failed'
systemctl status p2pd --no-pager | grep -F 'Status: "'
p2pctl status
# The packaged node runs in system mode with the system paths.
p2pctl --json status | grep -F '"mode":"system"'
# QUIC's sockets got buffers (as much as the host's net.core maxima allow), and the ceilings
# the package raises are installed.
p2pctl --json status | grep -E '"udp_receive_buffer":[1-9]'
grep -qx 'net.core.rmem_max = 4194304' /usr/lib/sysctl.d/30-p2pd.conf

# Upgrade (the same package again): every unit stays active, nothing fails.
dpkg -i /opt/t/p2pd.deb 2>&1 | tee /tmp/upgrade.log
! grep -E -i 'fail|refusing|could not' /tmp/upgrade.log
wait_for 30 systemctl is-active p2pd.socket p2pd-query.socket p2pd-handoff.socket p2pd-gate p2pd
wait_for 30 p2pctl status

# Root and members of p2pd may use the control socket; others get exit 3 and the hint.
useradd -m -G p2pd alice
useradd -m bob
su alice -c 'p2pctl status'
set +e; su bob -c 'p2pctl status' 2> /tmp/bob.err; rc=$?; set -e
[ "$rc" -eq 3 ]
grep -F 'group p2pd' /tmp/bob.err

# The audit trail has the group member's real uid, in the journal and in the ban list: the daemon
# runs in a private user namespace (where alice would be uid 65534), and p2pd-gate, which
# accepts outside it, hands her connection over with her credentials.
[ "$(systemctl show -p PrivateUsers --value p2pd)" = yes ]
alice_uid=$(id -u alice)
su alice -c 'p2pctl ban 192.0.2.5 --reason by-alice'
journalctl -u p2pd -o json --no-pager | grep -F '"EVENT":"control_request"' | grep -F "\"CALLER_UID\":\"$alice_uid\""
p2pctl bans | grep -F 192.0.2.5 | grep -F "uid $alice_uid"

# Read-only role: a member of p2pd-ro queries through query.sock (p2pctl finds it) but cannot
# change anything.
useradd -m -G p2pd-ro carol
su carol -c 'p2pctl status'
su carol -c 'p2pctl bans' | grep -F 192.0.2.5
su carol -c 'p2pctl limits'
set +e; su carol -c 'p2pctl ban 192.0.2.6' 2> /tmp/carol.err; rc=$?; set -e
[ "$rc" -eq 1 ]
grep -F 'read-only' /tmp/carol.err
! p2pctl --json bans | grep -F 192.0.2.6
set +e; su carol -c 'p2pctl --socket /run/p2pd/control.sock status'; rc=$?; set -e
[ "$rc" -eq 3 ]

# Journal lines carry their values in the short view, field names do not collide with
# journald's, no build machine path is logged.
journalctl -u p2pd --no-pager | grep -E 'listening address=/ip4/127\.0\.0\.1/tcp/4001/p2p/'
journalctl -u p2pd --no-pager | grep -F 'banned ban_target=192.0.2.5'
journalctl -u p2pd -o json --no-pager | grep -F '"BAN_TARGET":"192.0.2.5"'
! journalctl -u p2pd -o json --no-pager | grep -F -e '.cargo/registry' -e '/root/' -e '/work/'
# A 100 kB multiaddr from a client is logged cut short.
long=$(head -c 100000 /dev/zero | tr '\0' a)
p2pctl connect "/dns4/$long/tcp/1" || true
[ "$(journalctl -u p2pd -o cat --no-pager | awk '{ if (length($0) > m) m = length($0) } END { print m + 0 }')" -lt 8192 ]

# Native journald entries with structured fields.
journalctl -u p2pd -o json --no-pager | grep -F '"SYSLOG_IDENTIFIER":"p2pd"' | grep -F '"EVENT":"ready"'

# Reload applies a changed limit; STATUS= returns to the summary afterwards.
printf '[limits]\nmax_inbound = 77\n' > /etc/p2pd/p2pd.toml
systemctl reload p2pd
p2pctl limits | grep -E '^max_inbound +77 '
wait_for 30 sh -c "systemctl show -p StatusText --value p2pd | grep -F listening"

# A bad config stops the service with status 78 and no restart loop; the message names the
# accepted range.
cp /etc/p2pd/p2pd.toml /tmp/good.toml
printf '[limits]\nmax_inbound = -5\n' > /etc/p2pd/p2pd.toml
systemctl restart p2pd || true
wait_for 30 sh -c '[ "$(systemctl show -p ActiveState --value p2pd)" = failed ]'
[ "$(systemctl show -p ExecMainStatus --value p2pd)" = 78 ]
[ "$(systemctl show -p NRestarts --value p2pd)" = 0 ]
journalctl -u p2pd --no-pager | grep -F 'accepted: 1 to 1000000'
cp /tmp/good.toml /etc/p2pd/p2pd.toml
systemctl reset-failed p2pd
systemctl start p2pd
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

# A user-mode node beside the packaged one, started as the README says (no config, no paths):
# user mode despite /etc/p2pd/p2pd.toml, so no clash on /var/lib/p2pd, 4001 or 9100.
addr=$(p2pctl --json status | grep -o '/ip4/127\.0\.0\.1/tcp/[0-9]*/p2p/[A-Za-z0-9]*' | head -n1)
[ -n "$addr" ]
su - alice -c "p2pd --bootstrap $addr > p2pd.log 2>&1 &"
# Her p2pctl finds her node (its socket exists), not the system one.
wait_for 30 sh -c "su - alice -c 'p2pctl --json status' | grep -F '\"mode\":\"user\"'" ||
    { cat /home/alice/p2pd.log; exit 1; }
test -e /home/alice/.local/state/p2pd/identity.key
alice_peer=$(su - alice -c 'p2pctl --json status' | json_field peer_id)
wait_for 30 sh -c "p2pctl --json peers | grep -F $alice_peer"
# The DHT works between them: both serve it on this loopback-only network.
wait_for 30 sh -c "p2pctl --json status | grep -F '\"dht_mode\":\"server\"'"
wait_for 60 su - alice -c 'p2pctl dht put system-test-key hello-from-alice'
wait_for 60 sh -c 'p2pctl dht get system-test-key | grep -F hello-from-alice'
# A standalone start does not warn about the empty routing table (diag reports it).
! journalctl -u p2pd --no-pager | grep -F 'Failed to trigger bootstrap'

# Stopping only the service leaves the sockets and the gate: the next p2pctl starts it again.
systemctl stop p2pd
systemctl is-active p2pd.socket p2pd-gate
wait_for 30 p2pctl status
systemctl is-active p2pd

# A clean stop leaves a fresh routing table; stopping the socket and the service stops them all.
rm -f /var/lib/p2pd/routing_table.json
systemctl stop p2pd.socket p2pd
! systemctl is-active p2pd.socket p2pd-query.socket p2pd-handoff.socket p2pd-gate p2pd
[ "$(systemctl show -p Result --value p2pd)" = success ]
# Written at shutdown (it was removed just before the stop).
test -s /var/lib/p2pd/routing_table.json
grep -F '"peers"' /var/lib/p2pd/routing_table.json

# Hardening as systemd itself sees it.
systemd-analyze security --threshold=11 p2pd.service | tail -n 1
systemd-analyze security --threshold=5 p2pd-gate.service | tail -n 1

# Remove keeps the state; purge deletes it.
dpkg -r p2pd
test -f /var/lib/p2pd/identity.key
dpkg -P p2pd
test ! -e /var/lib/p2pd

echo "SYSTEM TEST PASSED"
