#!/usr/bin/env bash
# Install gatewayd as a systemd service on a Debian store box (run as root from a checkout):
# a dedicated user in the device groups, a virtualenv in /opt/gatewayd, the unit, and an
# example config in /etc/gatewayd that you then edit.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
apt-get install -y -qq python3-venv pcscd >/dev/null
id gatewayd >/dev/null 2>&1 || useradd --system --home /var/lib/gatewayd --shell /usr/sbin/nologin \
  --groups dialout,input,lp gatewayd
python3 -m venv /opt/gatewayd
/opt/gatewayd/bin/pip install -q ".[devices]"
install -d -m 0750 -o root -g gatewayd /etc/gatewayd
[ -f /etc/gatewayd/gatewayd.toml ] || install -m 0640 -o root -g gatewayd \
  docs/gatewayd.example.toml /etc/gatewayd/gatewayd.toml
install -m 0644 systemd/gatewayd.service /etc/systemd/system/gatewayd.service
[ -f systemd/60-gatewayd.rules ] && install -m 0644 systemd/60-gatewayd.rules /etc/udev/rules.d/
systemctl daemon-reload
/opt/gatewayd/bin/gatewayd config check /etc/gatewayd/gatewayd.toml
echo "edit /etc/gatewayd/gatewayd.toml, then: systemctl enable --now gatewayd"
