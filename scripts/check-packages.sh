#!/usr/bin/env bash
# Builds the .deb and the .rpm and checks them: lintian clean, rpmlint without errors, the RPM's
# files and scriptlets as intended and installable into an alternate root, and the system test (the .deb installed in a
# booted Debian 12 with systemd). Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v lintian >/dev/null 2>&1 || missing+=(lintian)
command -v rpm >/dev/null 2>&1 || missing+=(rpm)
command -v rpmlint >/dev/null 2>&1 || missing+=(rpmlint)
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

scripts/dist.sh
deb=$(ls target/debian/p2pd_*.deb | head -n 1)
rpmfile=$(ls target/generate-rpm/p2pd-*.rpm | head -n 1)

lintian --fail-on error,warning "$deb"
echo "lintian: no errors or warnings"

# rpmlint: errors fail (the filters in the rpmlintrc each say why); warnings are shown.
rpmlint -r packaging/rpm/p2pd.rpmlintrc "$rpmfile"

rpm -qpl "$rpmfile" > target/rpm-files.txt
for f in /usr/bin/p2pd /usr/bin/p2pctl /etc/p2pd/p2pd.toml /usr/lib/systemd/system/p2pd.service \
         /usr/lib/systemd/system/p2pd.socket /usr/lib/systemd/system/p2pd-query.socket \
         /usr/lib/systemd/system/p2pd-handoff.socket /usr/lib/systemd/system/p2pd-gate.service \
         /usr/lib/sysusers.d/p2pd.conf /usr/lib/sysctl.d/30-p2pd.conf \
         /usr/share/man/man8/p2pd.8 /usr/share/man/man1/p2pctl.1 /usr/share/man/man5/p2pd.toml.5 \
         /usr/share/p2pd/prometheus/p2pd-alerts.yml /usr/share/p2pd/grafana/p2pd.json; do
  grep -qx "$f" target/rpm-files.txt || { echo "the rpm lacks $f" >&2; exit 1; }
done
scripts=$(rpm -qp --scripts "$rpmfile")
for s in 'systemd-sysusers p2pd.conf' 'systemd-sysctl 30-p2pd.conf' 'enable --now p2pd.socket p2pd-query.socket p2pd.service' 'disable --now p2pd.service p2pd-gate.service p2pd-handoff.socket p2pd-query.socket p2pd.socket' 'try-restart p2pd.service'; do
  grep -qF "$s" <<<"$scripts" || { echo "the rpm scriptlets lack: $s" >&2; exit 1; }
done
root=$(mktemp -d)
rpm --root "$root" --initdb
rpm --root "$root" -i --nodeps --noscripts "$rpmfile"
test -x "$root/usr/bin/p2pd"
rm -rf "$root"
echo "rpm: files and scriptlets as intended; installs into an alternate root"

tests/system/run.sh "$deb" > target/system-test.log 2>&1 || { cat target/system-test.log; exit 1; }
tail -n 1 target/system-test.log
