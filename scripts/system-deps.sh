#!/usr/bin/env bash
# Debian packages the tests and the demo use. Installs only what is missing; without root
# it says what to install and carries on (the tests that need a package skip without it).
# Usage: system-deps.sh [test|demo]   (demo: only the RTSP server, no browser)
set -euo pipefail
PKGS=(
  # a real RTSP server for the live tests and the demo (monitor/demo/rtsp_camera.py, run by Debian's python3)
  python3-gi gir1.2-gst-rtsp-server-1.0
  gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
)
if [ "${1:-test}" != "demo" ]; then
  PKGS+=(chromium)                         # a real browser as a WebRTC caller in the tests
  # a real Prometheus (+ promtool) and Alertmanager (+ amtool) for the alert-feed tests
  PKGS+=(prometheus prometheus-alertmanager)
  PKGS+=(docker-compose)                   # `docker-compose config` validates deploy/compose.yaml (no daemon)
  PKGS+=(shellcheck)                       # lints deploy/docker/gpu-entrypoint.sh
  # real voices for `synth --voices real` (train/synth/voices.py): recorded speakers ...
  PKGS+=(asterisk-core-sounds-en-g722 asterisk-core-sounds-es-g722 asterisk-core-sounds-fr-g722)
  PKGS+=(asterisk-core-sounds-it-g722 asterisk-core-sounds-ru-g722)
  PKGS+=(asterisk-prompt-fr-armelle asterisk-prompt-it-menardi-gsm asterisk-prompt-es-co)
  # ... speech synthesizers for the fakes, and GSM 06.10 (toast) for narrowband calls
  PKGS+=(espeak-ng flite festival festvox-kallpc16k festvox-us-slt-hts)
  PKGS+=(festvox-italp16k festvox-itapc16k festvox-ru libgsm-tools)
fi
missing=()
for p in "${PKGS[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "system-deps: not root; please install: ${missing[*]}" >&2
  exit 0
fi
echo "system-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
