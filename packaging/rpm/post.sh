systemd-sysusers p2pd.conf || :
if [ $1 -eq 1 ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
    systemctl enable --now p2pd.socket p2pd-query.socket p2pd.service >/dev/null 2>&1 || :
fi
