#!/usr/bin/env bash
# Installs the proxies proxybench measures proxyd against, from Debian's
# packages: tinyproxy, squid, haproxy, nginx (or only those named:
# `bash bench/install-peers.sh squid nginx`).
#
# proxybench runs each peer itself, in the foreground, on a loopback-only
# configuration from bench/peers/; the packages' own services are never
# started: while installing, a policy-rc.d that denies every service start is
# put in place (unless one already is), so that nothing listens on the
# packages' default ports (nginx on :80, squid on :3128, tinyproxy on :8888).
set -euo pipefail

peers=("$@")
if [ ${#peers[@]} -eq 0 ]; then
  peers=(tinyproxy squid haproxy nginx)
fi
for p in "${peers[@]}"; do
  case "$p" in
    tinyproxy|squid|haproxy|nginx) ;;
    *) echo "install-peers: unknown peer '$p' (tinyproxy, squid, haproxy, nginx)" >&2; exit 2 ;;
  esac
done

sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "install-peers: needs root (or sudo) for apt-get" >&2; exit 1
  fi
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-peers: needs apt-get (Debian or Ubuntu); install ${peers[*]} by other means" >&2
  exit 1
fi

missing=()
for p in "${peers[@]}"; do
  bin="$p"
  if ! command -v "$bin" >/dev/null 2>&1 && [ ! -x "/usr/sbin/$bin" ]; then missing+=("$p"); fi
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-peers: already installed: ${peers[*]}"
  exit 0
fi

policy=/usr/sbin/policy-rc.d
made_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# Temporary, from proxyd bench/install-peers.sh: start no service.\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod 755 "$policy"
  made_policy=1
fi
cleanup() { if [ -n "$made_policy" ]; then $sudo rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
${sudo:+$sudo -E} apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
for p in "${missing[@]}"; do
  if command -v "$p" >/dev/null 2>&1 || [ -x "/usr/sbin/$p" ]; then
    echo "install-peers: installed $p"
  else
    echo "install-peers: $p did not install" >&2; exit 1
  fi
done
