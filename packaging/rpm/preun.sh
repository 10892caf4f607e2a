if [ $1 -eq 0 ]; then
    systemctl disable --now p2pd.service p2pd-gate.service p2pd-handoff.socket p2pd-query.socket p2pd.socket >/dev/null 2>&1 || :
fi
