"""MIDI learn in a live window (pygame, dummy driver): l, then the next CC moved is bound to what
tab edits and the map is saved atomically to the user's map file, never the packaged one. The MIDI
input is the live loop's own abstraction fed synthetic messages (pygame.midi needs a device)."""

import dataclasses

import pygame

from dynastream.stream import session
from dynastream.stream.alpha import AlphaController, ControllerConfig
from dynastream.stream.config import DEFAULT_MIDI, load_live_config, load_midi_map, user_midi_map
from dynastream.stream.live import run_live
from dynastream.stream.stage import MidiLearn

CC, NOTE_ON = 0xB0, 0x90


class SyntheticMidi:
    """What ``stream.midi.MidiInput`` offers the live loop: ``read`` and ``close``."""

    name = "synthetic controller"

    def __init__(self):
        self.waiting: list[tuple[int, int, int]] = []

    def read(self) -> list[tuple[int, int, int]]:
        messages, self.waiting = self.waiting, []
        return messages

    def close(self) -> None:
        pass


def key(k: int) -> None:
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=k, mod=0, unicode="", scancode=0))


def test_learn_binds_the_next_cc_to_the_edited_site_and_saves_the_users_map(tmp_path, monkeypatch):
    midi = SyntheticMidi()
    monkeypatch.setattr(session, "open_midi", lambda name="": midi)
    packaged = DEFAULT_MIDI.read_bytes()
    config = load_live_config(overrides={"midi.enabled": (True, "--midi")})
    assert config.midi.learn_file is None and MidiLearn(None).path == user_midi_map()   # not the packaged file
    config = dataclasses.replace(config, source="demo", models=("untrained:lite",), device="cpu", backend="eager",
                                 size=(64, 48), window=(64, 48), hud=True, fps=30.0,
                                 controls=ControllerConfig(slew=0))
    alphas = []

    def script(frame):
        alphas.append(frame.alpha.copy())
        n = len(alphas)
        if n == 2:
            key(pygame.K_TAB)          # edit res3_in alone
            key(pygame.K_l)            # learn
        elif n == 6:
            midi.waiting += [(NOTE_ON, 60, 100), (CC | 2, 21, 127)]   # a note is not learned; CC 21 on channel 3 is
        elif n == 14:
            midi.waiting += [(CC, 21, 0)]                            # the learned knob drives res3_in
        elif n == 22:
            key(pygame.K_q)

    stats = run_live(config, on_shown=script, report=lambda s: None, notice=lambda s: None)
    assert stats.ended_by == "quit"
    saved = load_midi_map(user_midi_map())
    assert saved.cc[21] == "res3_in"
    assert saved.cc[1] == "alpha" and saved.notes[48] == "model next", "the rest of the map is kept"
    assert DEFAULT_MIDI.read_bytes() == packaged
    assert sorted(p.name for p in user_midi_map().parent.iterdir()) == ["midi.yaml"], "no temporary left"
    res3 = [round(float(a[0]), 3) for a in alphas]
    others = {round(float(v), 3) for a in alphas for v in a[1:]}
    assert res3[:6] == [0.5] * 6 and res3[9:14] == [1.0] * 5 and res3[-4:] == [0.0] * 4
    assert others == {0.5}
    # the next session starts from the learned map
    again = load_live_config(overrides={"midi.enabled": (True, "--midi")})
    assert again.midi.midi_map.cc[21] == "res3_in"


def test_learn_writes_to_a_midi_map_given_on_the_command_line(tmp_path):
    own = tmp_path / "my-midi.yaml"
    own.write_text("channel: 1\ncc: {7: alpha}\n")
    config = load_live_config(overrides={"midi.enabled": (True, "--midi"), "midi.map": (str(own), "--midi-map")})
    assert config.midi.learn_file == str(own)
    learn = MidiLearn(config.midi.learn_file)
    learned, message = learn.feed([(CC | 1, 30, 64)], config.midi.midi_map)   # channel 2: not this map's channel
    assert learned == config.midi.midi_map and message is None
    controller = AlphaController(("res3_in", "up1_in", "out_in"), (0.0, 1.0))
    assert "alpha" in learn.start(controller)
    learned, message = learn.feed([(CC, 30, 64)], config.midi.midi_map)
    assert learned.cc == {7: "alpha", 30: "alpha"} and message == f"CC 30 -> alpha, saved to {own}"
    assert load_midi_map(own).cc == {7: "alpha", 30: "alpha"} and load_midi_map(own).channel == 1
    assert not learn.active
