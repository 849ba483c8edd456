"""Where the studio's MIDI goes and comes from, as mido's backends: a tiny base class and one module per backend.

`base` (the Sink interface every output shares, and TapSink), `rtmidi` (MIDI ports through python-rtmidi,
output and input together), `fluidsynth` (the built-in synth and its soundfont), `recorder` (a sink that keeps
what it was sent, for tests), `servers` (which sound servers run) and `general_midi` (the instruments' names).
No Qt in here: the scheduler, the MIDI input, the benchmarks and a script use them without a window.
"""
