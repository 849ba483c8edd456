#!/usr/bin/env bash
# Installs the Debian packages that the tests and the studio's audio need: a JACK server for real MIDI
# ports, FluidSynth with a small General MIDI soundfont, the X libraries Qt wants under Xvfb, and
# desktop-file-utils, whose desktop-file-validate checks the launcher `continuo --install-desktop` writes,
# and a C compiler (gcc, with the C library's headers) that builds the one-stream decoding step, step.c.
# Only as root on Debian; elsewhere it says what to install and carries on.
set -euo pipefail
packages=(jackd2 libfluidsynth3 fluidsynth timgm6mb-soundfont libxcb-icccm4 libxcb-keysyms1 libegl1 libgl1 libxkbcommon0 libfontconfig1 libdbus-1-3 desktop-file-utils gcc libc6-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "note: system packages missing (${missing[*]}); install them with your package manager." >&2
    exit 0
fi
echo "installing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
