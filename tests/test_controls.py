import numpy as np
import pygame
import pytest

from dynastream import nets
from dynastream.nets.errors import DynastreamError
from dynastream.stream.alpha import ALL_SITES, Action, AlphaController, Command, ControllerConfig
from dynastream.stream.config import DEFAULT_MIDI, load_midi_map
from dynastream.stream.controls import handle_event
from dynastream.stream.keyframes import load_track
from dynastream.stream.midi import MidiMap, list_midi_inputs, open_midi

SITES = ("res3_in", "up1_in", "out_in")


def snap(ctrl, now, time_s=0.0):
    out = np.zeros(ctrl.n_sites, np.float32)
    ctrl.snapshot(out, now, time_s)
    return out


def test_slew_limits_how_fast_alpha_moves_and_latest_target_wins():
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=2.0, initial=0.0))
    assert np.all(snap(ctrl, 10.0) == 0)
    ctrl.set_alpha(0.3)
    ctrl.set_alpha(1.0)          # only the last target between two frames counts
    seen = [snap(ctrl, 10.0 + 0.1 * k)[0] for k in range(1, 8)]
    steps = np.diff([0.0] + seen)
    assert np.all(steps <= 0.2 + 1e-6), "moved faster than slew x dt"
    np.testing.assert_allclose(seen[:5], [0.2, 0.4, 0.6, 0.8, 1.0], atol=1e-6)
    assert seen[-1] == 1.0       # reaches the target and stays there
    ctrl.set_alpha(0.0)
    assert snap(ctrl, 10.8)[0] == pytest.approx(0.8)


def test_slew_zero_jumps_and_targets_clamp_to_the_checkpoint_range(tmp_path):
    net = nets.load("untrained:lite")
    path = nets.save(net, tmp_path / "wide.pt", alpha_range=(-0.5, 1.5))
    loaded = nets.load(path)
    ctrl = AlphaController(loaded.sites, loaded.alpha_range, ControllerConfig(slew=0))
    assert (ctrl.lo, ctrl.hi) == (-0.5, 1.5)
    assert snap(ctrl, 0.0)[0] == pytest.approx(0.5)      # starts in the middle of the range
    ctrl.set_alpha(9.0)
    assert np.all(snap(ctrl, 0.01) == 1.5)
    ctrl.nudge(-10)
    assert np.all(snap(ctrl, 0.02) == -0.5)


def test_presets_default_spread_custom_and_per_site():
    ctrl = AlphaController(SITES, (-1.0, 1.0), ControllerConfig(slew=0))
    ctrl.preset(0)
    assert np.all(snap(ctrl, 0) == -1)
    ctrl.preset(9)
    assert np.all(snap(ctrl, 1) == 1)
    ctrl.preset(3)
    np.testing.assert_allclose(snap(ctrl, 2), -1 + 2 * 3 / 9, rtol=1e-6)
    presets = (0.0, 0.5, (0.0, 1.0, 0.25), 2.0) + (1.0,) * 6
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0, presets=presets))
    ctrl.preset(1)
    assert np.all(snap(ctrl, 0) == 0.5)
    ctrl.preset(2)
    np.testing.assert_allclose(snap(ctrl, 1), [0.0, 1.0, 0.25])
    ctrl.preset(3)                                       # clamped to the model's range
    assert np.all(snap(ctrl, 2) == 1.0)
    with pytest.raises(DynastreamError, match="10 entries"):
        ControllerConfig(presets=(0.0, 1.0))


def test_per_site_editing_cycles_and_touches_only_the_edited_site():
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0, initial=0.5))
    assert ctrl.status().edit_site == ALL_SITES
    assert ctrl.cycle_site() == 0
    assert ctrl.cycle_site() == 1
    ctrl.nudge(0.25)
    np.testing.assert_allclose(snap(ctrl, 0), [0.5, 0.75, 0.5])
    ctrl.set_alpha(0.0)
    np.testing.assert_allclose(snap(ctrl, 1), [0.5, 0.0, 0.5])
    assert ctrl.cycle_site() == 2
    assert ctrl.cycle_site() == ALL_SITES
    ctrl.nudge(0.1)
    np.testing.assert_allclose(snap(ctrl, 2), [0.6, 0.1, 0.6], atol=1e-6)


def test_lfo_sweeps_the_range_from_the_current_alpha_and_manual_input_stops_it():
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=100, lfo_period=4.0, initial=0.25))
    snap(ctrl, 0.0)
    assert ctrl.toggle_lfo()
    values = [snap(ctrl, t)[0] for t in np.arange(0.05, 8.0, 0.05)]
    assert abs(values[0] - 0.25) < 0.05, "the sweep starts where alpha was"
    assert min(values) < 0.01 and max(values) > 0.99
    assert ctrl.status().lfo
    ctrl.nudge(0.0)
    assert not ctrl.status().lfo
    held = snap(ctrl, 8.05)[0]
    assert snap(ctrl, 9.0)[0] == pytest.approx(held, abs=0.06)


def test_keyframe_track_drives_alpha_without_slew(tmp_path):
    csv_path = tmp_path / "k.csv"
    csv_path.write_text("t,alpha\n0,0\n1,1\n2,0.5\n")
    track = load_track(csv_path, SITES, (0.0, 1.0))
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0.1), track, track_fps=25)
    assert ctrl.status().track
    np.testing.assert_allclose(snap(ctrl, 0.0, time_s=0.9), [0.9] * 3, rtol=1e-6)
    np.testing.assert_allclose(snap(ctrl, 0.01, time_s=1.5), [0.75] * 3, rtol=1e-6)
    ctrl.set_alpha(1.0)          # a person takes over
    assert not ctrl.status().track
    assert ctrl.toggle_track()   # and can hand back


def test_frame_keyed_per_site_track_uses_the_source_frame_index(tmp_path):
    path = tmp_path / "k.yaml"
    path.write_text("interpolation: step\nkeys:\n  - {frame: 0, alpha: 0}\n"
                    "  - {frame: 10, alpha: {res3_in: 0.2, up1_in: 1.0, out_in: 0.5}}\n")
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(), load_track(path, SITES, (0.0, 1.0)), 25)
    out = np.zeros(3, np.float32)
    ctrl.snapshot(out, 0.0, time_s=99.0, frame=9)
    assert np.all(out == 0)
    ctrl.snapshot(out, 0.01, time_s=0.0, frame=10)
    np.testing.assert_allclose(out, [0.2, 1.0, 0.5])
    ctrl.set_model(("res3_in",), (0.0, 1.0))      # the track names sites this model lacks: dropped
    assert not ctrl.status().track


def test_midi_cc_and_notes_map_to_alpha_presets_and_models():
    midi_map = load_midi_map(DEFAULT_MIDI)           # the shipped configs/midi.yaml
    ctrl = AlphaController(SITES, (-1.0, 1.0), ControllerConfig(slew=0))
    cc, note_on = 0xB0, 0x90
    # a knob turned through several values between two frames: the last one wins
    assert midi_map.apply_all([(cc, 1, 0), (cc, 1, 64), (cc, 1, 127)], ctrl) == []
    assert np.all(snap(ctrl, 0) == 1.0)
    midi_map.apply(cc | 5, 7, 0, ctrl)               # any channel: CC 7 on channel 6
    assert np.all(snap(ctrl, 1) == -1.0)
    midi_map.apply(cc, 16, 127, ctrl)                # CC 16 -> res3_in only
    np.testing.assert_allclose(snap(ctrl, 2), [1.0, -1.0, -1.0])
    midi_map.apply(note_on, 36 + 9, 100, ctrl)       # pad -> preset 9
    assert np.all(snap(ctrl, 3) == 1.0)
    midi_map.apply(note_on, 36, 0, ctrl)             # velocity 0 is a note off: nothing
    assert np.all(snap(ctrl, 4) == 1.0)
    assert midi_map.apply_all([(note_on, 48, 90)], ctrl) == [Command(Action.NEXT_MODEL)]
    midi_map.apply(0x80, 36, 64, ctrl)               # note off: nothing
    assert np.all(snap(ctrl, 5) == 1.0)


def test_midi_map_channel_models_and_errors():
    m = MidiMap.from_dict({"channel": 2, "cc": {20: "alpha", 21: "nope_site"},
                           "notes": {60: "model untrained:lite-dual"}})
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0, initial=0.5))
    m.apply(0xB0, 20, 127, ctrl)                     # channel 1: ignored
    assert np.all(snap(ctrl, 0) == 0.5)
    m.apply(0xB1, 20, 127, ctrl)                     # channel 2
    assert np.all(snap(ctrl, 1) == 1.0)
    m.apply(0xB1, 21, 0, ctrl)                       # a site this model lacks: ignored
    assert np.all(snap(ctrl, 2) == 1.0)
    assert m.apply(0x91, 60, 1, ctrl) == Command(Action.LOAD_MODEL, "untrained:lite-dual")
    with pytest.raises(DynastreamError, match="unknown key 'knobs'"):
        MidiMap.from_dict({"knobs": {}})
    with pytest.raises(DynastreamError, match="note 40 maps to 'explode'"):
        MidiMap.from_dict({"notes": {40: "explode"}})
    with pytest.raises(DynastreamError, match="CC number 300"):
        MidiMap.from_dict({"cc": {300: "alpha"}})


def test_no_midi_device_is_a_clear_error():
    assert list_midi_inputs() == []                  # no MIDI hardware on the test machines
    with pytest.raises(DynastreamError, match="no MIDI input device found"):
        open_midi("")


@pytest.fixture
def event_queue():
    pygame.display.init()
    pygame.display.set_mode((64, 48))
    pygame.event.clear()
    yield
    pygame.display.quit()


def post_key(key, mod=0):
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key, mod=mod, unicode="", scancode=0))


def test_keyboard_map_from_posted_pygame_events(event_queue):
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0, step=0.1, fine_step=0.01, initial=0.5))
    post_key(pygame.K_UP)
    post_key(pygame.K_RIGHT)
    post_key(pygame.K_DOWN, pygame.KMOD_LSHIFT)       # shift: fine step
    post_key(pygame.K_TAB)                           # edit res3_in only
    post_key(pygame.K_LEFT)
    commands = [c for e in pygame.event.get() if (c := handle_event(e, ctrl)) is not None]
    assert commands == []
    np.testing.assert_allclose(snap(ctrl, 0), [0.59, 0.69, 0.69], atol=1e-6)
    post_key(pygame.K_TAB)
    post_key(pygame.K_TAB)
    post_key(pygame.K_TAB)                           # back to all sites
    post_key(pygame.K_0)
    for e in pygame.event.get():
        handle_event(e, ctrl)
    assert np.all(snap(ctrl, 1) == 0.0)
    post_key(pygame.K_KP9)
    post_key(pygame.K_a)
    for e in pygame.event.get():
        handle_event(e, ctrl)
    assert ctrl.status().lfo and ctrl.status().target[0] == 1.0
    keys = [pygame.K_m, pygame.K_SPACE, pygame.K_v, pygame.K_f, pygame.K_s, pygame.K_r, pygame.K_h,
            pygame.K_q, pygame.K_ESCAPE]
    for k in keys:
        post_key(k)
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    commands = [handle_event(e, ctrl) for e in pygame.event.get()]
    assert [c.action for c in commands if c is not None] == [
        Action.NEXT_MODEL, Action.PAUSE, Action.VIEW, Action.FULLSCREEN, Action.SCREENSHOT, Action.RECORD,
        Action.HELP, Action.QUIT, Action.QUIT, Action.QUIT]


def test_model_switch_keeps_alpha_per_site_and_clamps_to_the_new_range():
    ctrl = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0, initial=0.8))
    ctrl.set_model(SITES, (-1.0, 0.5))
    np.testing.assert_allclose(snap(ctrl, 0), [0.5] * 3)
    ctrl.set_model(("res3_in",), (0.0, 1.0))
    assert snap(ctrl, 1).shape == (1,)


def test_the_alpha_state_machine_imports_neither_pygame_nor_midi():
    """stream.alpha (the controller), stream.midi's map and the OSC and web inputs run without a
    window library: a headless server or a test imports them alone."""
    import subprocess
    import sys

    code = ("import sys, dynastream.stream.alpha, dynastream.stream.midi, dynastream.stream.osc, "
            "dynastream.stream.inputs\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in ('pygame', 'torch', 'cv2'))\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
