"""How the note grid draws: each layer (rows and bar lines, the loop, Fill's time range, the notes, their
names, the empty roll's hint) painted from the view state and the notes given, with no widget of its own.

Notes are drawn in batches of one colour, so a paint costs a handful of calls whatever the song's size; when
more than OVERVIEW_THRESHOLD notes are in view they are rasterised with numpy into one image instead.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Collection, Mapping, Sequence

import numpy as np
from PySide6.QtCore import QLineF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QImage, QPainter, QPen

from ..song import CONTINUATION, MOTIF, NoteArrays, SongNote, TempoMap
from ..transport import Transport
from .state import Palette, RollState, is_black_key, pitch_name

OVERVIEW_THRESHOLD = 1500  # notes in view above which they are rasterised as one image


def visible_estimate(arrays: NoteArrays, start: float, end: float) -> int:
    """About how many notes start in view (two bisections): enough to choose how to draw them."""
    return int(np.searchsorted(arrays.starts, end, "right") - np.searchsorted(arrays.starts, start, "left"))


def note_rect(state: RollState, note: SongNote) -> QRectF:
    """The rectangle a note is drawn in."""
    x = state.x_of(note.start)
    return QRectF(x, state.y_of(note.pitch), max(note.length * state.pixels_per_beat, 2.0), state.key_height)


def paint_hint(painter: QPainter, rect: QRectF, text: str) -> None:
    """The empty roll's words, in a band across the grid."""
    font = painter.font()
    font.setPixelSize(15)
    painter.setFont(font)
    painter.setPen(Palette.hint)
    painter.drawText(rect.adjusted(12, 0, -12, 0), Qt.AlignCenter | Qt.TextWordWrap, text)


def paint_grid(painter: QPainter, state: RollState, width: int, height: int, tempo_map: TempoMap) -> None:
    """The background, the pitch rows (black keys shaded, octaves marked) and the grid, beat and bar lines."""
    painter.fillRect(0, 0, width, height, Palette.background)
    low, high = state.pitch_at(height), state.pitch_at(0)
    key_height = state.key_height
    black_rows = [
        QRectF(0, state.y_of(pitch), width, key_height) for pitch in range(low, high + 1) if is_black_key(pitch)
    ]
    painter.setPen(Qt.NoPen)
    painter.setBrush(Palette.black_key_row)
    painter.drawRects(black_rows)
    if state.scale:  # a key lock: its scale's rows lit, the tonic's more
        for color, rows in (
            (Palette.scale_row, [p for p in range(low, high + 1) if state.in_scale(p) and p % 12 != state.tonic]),
            (Palette.tonic_row, [p for p in range(low, high + 1) if p % 12 == state.tonic]),
        ):
            painter.setBrush(color)
            painter.drawRects([QRectF(0, state.y_of(pitch), width, key_height) for pitch in rows])
    if key_height >= 6:
        painter.setPen(Palette.row_line)
        painter.drawLines(
            [
                QLineF(0, state.y_of(pitch) + key_height, width, state.y_of(pitch) + key_height)
                for pitch in range(low, high + 1)
                if pitch % 12 not in (0, 5)
            ]
        )
    painter.setPen(Palette.octave_line)
    painter.drawLines(
        [
            QLineF(0, state.y_of(pitch) + key_height, width, state.y_of(pitch) + key_height)
            for pitch in range(low, high + 1)
            if pitch % 12 == 0
        ]
    )
    # Vertical lines: the grid step, beats and bars (from the song's tempo map), each only where they are far
    # enough apart.
    start, end = state.beat_at(0), state.beat_at(width)
    ppb = state.pixels_per_beat
    shortest = tempo_map.shortest_bar(start, end)
    step = state.snap_step or 0.25
    for spacing, color in ((step, Palette.sub_beat_line), (1.0, Palette.beat_line)):
        if spacing * ppb < 6:
            continue
        first = math.floor(start / spacing)
        lines = []
        for index in range(first, int(end / spacing) + 2):
            x = state.x_of(index * spacing)
            lines.append(QLineF(x, 0, x, height))
        painter.setPen(color)
        painter.drawLines(lines)
    every = 1
    while shortest * every * ppb < 4:  # zoomed far out: every n-th bar line
        every *= 2
    bars = tempo_map.bar_lines(start, end, every)
    lines = [QLineF(state.x_of(bar.beat), 0, state.x_of(bar.beat), height) for bar in bars]
    painter.setPen(Palette.bar_line)
    painter.drawLines(lines)


def paint_loop(painter: QPainter, state: RollState, transport: Transport, width: int, height: int) -> None:
    """The loop region, shaded brighter while looping is on."""
    x0, x1 = state.x_of(transport.loop_start), state.x_of(transport.loop_end)
    if x1 < 0 or x0 > width:
        return
    painter.fillRect(
        QRectF(x0, 0, x1 - x0, height), Palette.loop_shade if transport.loop_enabled else Palette.loop_shade_off
    )


def paint_time_range(painter: QPainter, state: RollState, width: int, height: int) -> None:
    """The span Fill writes, shaded and edged."""
    if state.time_range is None:
        return
    x0, x1 = (state.x_of(beat) for beat in state.time_range)
    if x1 < 0 or x0 > width:
        return
    painter.fillRect(QRectF(x0, 0, x1 - x0, height), Palette.time_range_shade)
    painter.setPen(QPen(Palette.time_range_edge, 1))
    painter.drawLines([QLineF(x, 0, x, height) for x in (x0, x1)])


def paint_notes(painter: QPainter, state: RollState, notes: Sequence[SongNote], writing: Collection[int]) -> None:
    """Notes a few at a time, one batch per colour (part, velocity, selected, being written), named when there
    is room."""
    if not notes:
        return
    selection = state.selection
    ppb, key_height, left = state.pixels_per_beat, state.key_height, state.left_beat
    top = 127 - state.top_key
    # One batch per colour: a handful of drawRects calls instead of one call per note.
    batches: dict[tuple[str, int, bool, bool], list[QRectF]] = {}
    levels = Palette.VELOCITY_LEVELS
    for note in notes:
        rect = QRectF(
            (note.start - left) * ppb, (top - note.pitch) * key_height, max(note.length * ppb, 2.0), key_height
        )
        key = (note.part, note.velocity * levels // 128, note.id in selection, note.id in writing)
        batch = batches.get(key)
        if batch is None:
            batches[key] = [rect]
        else:
            batch.append(rect)
    outline = key_height >= 5 and ppb >= 8
    for (part, level, selected, is_writing), rects in batches.items():
        velocity = level * 128 // levels + 1
        painter.setBrush(Palette.note_fill(part, velocity, selected, is_writing))
        if is_writing:
            painter.setPen(QPen(Palette.note_fill(part, 127), 1, Qt.DashLine))
        elif selected:
            painter.setPen(QPen(Palette.selected_outline, 1))
        elif outline:
            painter.setPen(QPen(Palette.note_outline, 1))
        else:
            painter.setPen(Qt.NoPen)
        painter.drawRects(rects)
        if is_writing:
            painter.setPen(Qt.NoPen)
            painter.setBrush(QBrush(QColor(255, 255, 255, 90), Qt.BDiagPattern))
            painter.drawRects(rects)
    if key_height >= 11 and ppb >= 40 and len(notes) <= 400:
        paint_labels(painter, state, notes)


def paint_overview(
    painter: QPainter,
    state: RollState,
    arrays: NoteArrays,
    region: tuple[float, float, int, int],
    width: int,
    preview: Mapping[int, SongNote],
    hidden: Collection[int],
    writing: Collection[int],
) -> None:
    """Thousands of notes at once: rasterised with numpy into one image, a pixel column at a time.

    Used when so many notes are in view that most are a pixel or two wide; colours stay the same
    (velocity, part, selection), outlines go. Costs a few milliseconds for 10,000 notes. `region` is
    (start beat, end beat, lowest pitch, highest pitch); a gesture's `preview` notes stand in for the song's
    and its `hidden` ones are left out, as the canvas shows them.
    """
    start, end, low, high = region
    mask = (arrays.starts <= end) & (arrays.ends >= start) & (arrays.pitches >= low) & (arrays.pitches <= high)
    skipped = set(preview) | set(hidden)
    if skipped:
        mask &= ~np.isin(arrays.ids, np.fromiter(skipped, np.int64))
    columns = [
        column[mask]
        for column in (arrays.ids, arrays.pitches, arrays.velocities, arrays.starts, arrays.ends, arrays.continuation)
    ]
    if preview:
        extra = NoteArrays.from_notes(list(preview.values()))
        columns = [
            np.concatenate([column, more])
            for column, more in zip(
                columns,
                (extra.ids, extra.pitches, extra.velocities, extra.starts, extra.ends, extra.continuation),
                strict=True,
            )
        ]
    ids, pitches, velocities, starts, ends, continuation = columns
    if not len(ids):
        return
    levels = Palette.VELOCITY_LEVELS
    codes = 1 + velocities * levels // 128 + levels * continuation
    if state.selection:
        codes[np.isin(ids, np.fromiter(state.selection, np.int64))] = (
            2 * levels + 1 + continuation[np.isin(ids, np.fromiter(state.selection, np.int64))]
        )
    if writing:
        codes[np.isin(ids, np.fromiter(writing, np.int64))] = 2 * levels + 3
    rows = high - low + 1
    ppb, left = state.pixels_per_beat, state.left_beat
    x0 = np.clip(np.floor((starts - left) * ppb).astype(np.int64), 0, width)
    x1 = np.clip(
        np.maximum(np.floor((starts - left) * ppb) + 1, np.ceil((ends - left) * ppb)).astype(np.int64), 0, width
    )
    keep = x1 > x0
    order = np.argsort(codes[keep], kind="stable")  # louder, selected and written notes paint last
    x0, x1, row, codes = x0[keep][order], x1[keep][order], (high - pitches)[keep][order], codes[keep][order]
    spans = x1 - x0
    which = np.repeat(np.arange(len(spans)), spans)
    offsets = np.arange(len(which)) - np.repeat(np.cumsum(spans) - spans, spans)
    grid = np.zeros((rows, width), np.uint8)
    grid[row[which], x0[which] + offsets] = codes[which]
    pixels = np.ascontiguousarray(overview_colours()[grid])
    image = QImage(pixels.data, width, rows, width * 4, QImage.Format_ARGB32)
    painter.drawImage(QRectF(0, state.y_of(high), width, rows * state.key_height), image)


@functools.cache
def overview_colours() -> np.ndarray:
    """ARGB per overview code: 0 empty, then motif and continuation by velocity level, selected, writing."""
    levels = Palette.VELOCITY_LEVELS  # the palette is constant: one table for every canvas, made once
    table = [0]
    for part in (MOTIF, CONTINUATION):
        table += [Palette.note_fill(part, level * 128 // levels + 1).rgba() for level in range(levels)]
    table += [
        Palette.note_fill(MOTIF, 100, selected=True).rgba(),
        Palette.note_fill(CONTINUATION, 100, selected=True).rgba(),
        Palette.note_fill(CONTINUATION, 100, writing=True).rgba(),
    ]
    return np.array(table, np.uint32)


def paint_labels(painter: QPainter, state: RollState, notes: Sequence[SongNote]) -> None:
    """Each note's pitch name, where the note is wide enough to hold it."""
    painter.setPen(QColor(10, 12, 16))
    font = painter.font()
    font.setPixelSize(max(8, int(state.key_height) - 4))
    painter.setFont(font)
    for note in notes:
        rect = note_rect(state, note)
        if rect.width() >= 26:
            painter.drawText(rect.adjusted(3, 0, -2, 0), Qt.AlignVCenter | Qt.AlignLeft, pitch_name(note.pitch))
