systemd-sysusers p2pd.conf || :
# QUIC's socket buffer ceilings (/usr/lib/sysctl.d/30-p2pd.conf); a container cannot set them.
/usr/lib/systemd/systemd-sysctl 30-p2pd.conf >/dev/null 2>&1 || :
if [ $1 -eq 1 ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable --now p2pd.socket p2pd-query.socket p2pd.service >/dev/null 2>&1 || :
fi
