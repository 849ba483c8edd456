"""Which sound servers run (JACK, PipeWire, PulseAudio, ALSA's devices): a cheap look at their sockets.

Both backends ask: rtmidi must not open a JACK client without a server (it would hang or start one), and the
built-in synth tries only the audio drivers that have something to talk to. The MIDI input's port watcher
asks every half second, so that Automatic output can choose again when a server comes or goes.
"""

from __future__ import annotations

import glob
import os
import sys

SERVER_NAMES = {
    "pipewire": "PipeWire",
    "pulseaudio": "PulseAudio",
    "jack": "JACK",
    "alsa": "ALSA",
    "coreaudio": "Core Audio",
    "dsound": "DirectSound",
    "wasapi": "WASAPI",
}
PLATFORM_DRIVERS = {"coreaudio": "darwin", "dsound": "win32", "wasapi": "win32"}
WATCHED_SERVERS = ("pipewire", "pulseaudio", "jack")  # sound servers that start and stop while the studio runs


def jack_server_running() -> bool:
    """Whether a JACK server answers, without starting one (rtmidi's JACK client would hang or spawn)."""
    uid = os.getuid() if hasattr(os, "getuid") else 0
    server = os.environ.get("JACK_DEFAULT_SERVER", "default")
    folders = [os.environ.get("JACK_PROMISCUOUS_SERVER") and "/dev/shm", "/dev/shm", os.environ.get("TMPDIR"), "/tmp"]
    for folder in filter(None, folders):
        if glob.glob(os.path.join(folder, f"jack_{server}_{uid}_*")) or glob.glob(
            os.path.join(folder, f"jack-{uid}", server)
        ):
            return True
    # PipeWire's JACK needs no socket file of its own; rtmidi will tell us if it is not there.
    return bool(glob.glob(f"/run/user/{uid}/pipewire-0"))


def audio_servers() -> list[str]:
    """The sound servers running now (of WATCHED_SERVERS): a cheap look at their sockets, for the port watcher."""
    return [server for server in WATCHED_SERVERS if server_present(server)]


def server_present(driver: str) -> bool:
    """Whether an audio driver has something to talk to; trying one that has not only prints errors."""
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid() if hasattr(os, 'getuid') else 0}"
    if driver == "jack":
        return jack_server_running()
    if driver == "pipewire":
        return os.path.exists(os.path.join(runtime, "pipewire-0"))
    if driver == "pulseaudio":
        return bool(os.environ.get("PULSE_SERVER")) or os.path.exists(os.path.join(runtime, "pulse", "native"))
    if driver == "alsa":
        return bool(glob.glob("/dev/snd/pcm*"))
    if driver == "coreaudio":
        return sys.platform == "darwin"
    return sys.platform == "win32"  # dsound, wasapi
