import os
import subprocess
import sys

import cv2
import numpy as np
import pygame
import pytest

from dynastream.stream.display import HudInfo, Window, fit_rect
from tests.media import pattern_frame


def screen_rgb() -> np.ndarray:
    return pygame.surfarray.array3d(pygame.display.get_surface()).transpose(1, 0, 2)


@pytest.fixture
def window(tmp_path):
    w = Window((64, 48), hud=False, screenshot_dir=str(tmp_path / "shots"))
    yield w
    w.close()


def hud_info():
    return HudInfo(model="untrained:lite", untrained=True, device="cpu", size_wh=(64, 48),
                   sites=("res3_in", "up1_in", "out_in"), alpha=np.array([0.1, 0.5, 0.9], np.float32),
                   target=np.array([0.2, 0.5, 1.0], np.float32), edit_site=1, fps=25.0, latency_ms=40.0)


def test_window_shows_the_frame_exactly_at_its_size(window):
    frame = pattern_frame(0, 48, 64)
    window.show(frame, None, hud_info())
    assert np.array_equal(screen_rgb(), frame)
    frame2 = pattern_frame(5, 48, 64)                 # the same buffer redrawn with new pixels
    frame[...] = frame2
    window.show(frame, None, hud_info())
    assert np.array_equal(screen_rgb(), frame2)


def test_scaled_letterboxed_and_split_views(tmp_path):
    w = Window((128, 128), hud=False, screenshot_dir=str(tmp_path))
    try:
        stylized = np.zeros((48, 64, 3), np.uint8)
        stylized[..., 0] = 200                       # red
        original = np.zeros((48, 64, 3), np.uint8)
        original[..., 2] = 200                       # blue
        w.show(stylized, original, hud_info())
        rgb = screen_rgb()
        assert tuple(fit_rect((64, 48), pygame.Rect(0, 0, 128, 128))) == (0, 16, 128, 96)
        assert np.all(rgb[:16] == 0) and np.all(rgb[112:] == 0)    # letterbox bars
        assert np.all(rgb[20:108, :, 0] == 200)                     # stylized only
        assert w.cycle_view() == "split" and w.wants_original
        w.show(stylized, original, hud_info())
        rgb = screen_rgb()
        assert rgb[60, 10, 2] == 200 and rgb[60, 10, 0] == 0        # left half: original
        assert rgb[60, 120, 0] == 200 and rgb[60, 120, 2] == 0      # right half: stylized
        assert w.cycle_view() == "side"
        w.show(stylized, original, hud_info())
        rgb = screen_rgb()
        assert rgb[64, 30, 2] == 200 and rgb[64, 100, 0] == 200
        assert w.cycle_view() == "stylized" and not w.wants_original
    finally:
        w.close()


def test_hud_help_and_fullscreen_draw_over_the_picture(tmp_path):
    w = Window((320, 240), hud=True, screenshot_dir=str(tmp_path))
    try:
        frame = np.full((240, 320, 3), 128, np.uint8)
        w.show(frame, None, hud_info())
        rgb = screen_rgb()
        assert not np.all(rgb[:60, :200] == 128), "the HUD is drawn top left"
        assert np.all(rgb[200:, 250:] == 128)
        w.toggle_help()
        w.show(frame, None, hud_info())
        assert not np.all(screen_rgb()[100:140, 140:180] == 128), "the help overlay is drawn in the middle"
        w.toggle_fullscreen()
        w.show(frame, None, hud_info())
        assert pygame.display.get_surface().get_size() != (320, 240)
        w.toggle_fullscreen()
        assert pygame.display.get_surface().get_size() == (320, 240)
    finally:
        w.close()


def test_screenshot_saves_the_next_view_without_hud(tmp_path):
    w = Window((64, 48), hud=True, screenshot_dir=str(tmp_path / "shots"))
    try:
        frame = pattern_frame(3, 48, 64)
        w.request_screenshot()
        w.show(frame, None, hud_info())
        assert len(w.screenshots) == 1 and w.screenshots[0].suffix == ".png"
        saved = cv2.cvtColor(cv2.imread(str(w.screenshots[0])), cv2.COLOR_BGR2RGB)
        assert np.array_equal(saved, frame)
        assert [p.name for p in (tmp_path / "shots").iterdir()] == [w.screenshots[0].name]   # no temp file left
    finally:
        w.close()


def test_no_display_is_one_clear_sentence():
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    code = ("from dynastream.stream.display import Window\n"
            "try:\n    Window((64, 48))\nexcept Exception as e:\n    print(type(e).__name__, e)\n")
    for driver in ("x11", None):   # x11 asked for but absent; nothing asked for (SDL falls back to offscreen)
        env.pop("SDL_VIDEODRIVER", None)
        if driver:
            env["SDL_VIDEODRIVER"] = driver
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert proc.stdout.startswith("DisplayError no display is available"), proc.stdout + proc.stderr
        assert "--headless" in proc.stdout
