"""The live window (pygame): the stylized picture, HUD, help overlay, split views, fullscreen and
screenshots. Runs on the main thread only. Headless runs have no Window at all."""

import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import numpy as np

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

from dynastream.nets.atomic import atomic_open  # noqa: E402
from dynastream.nets.errors import DynastreamError  # noqa: E402
from dynastream.stream.alpha import ALL_SITES  # noqa: E402
from dynastream.stream.controls import HELP_LINES  # noqa: E402

View = Literal["stylized", "split", "side"]
VIEWS: tuple[View, ...] = ("stylized", "split", "side")
_NO_WINDOW_DRIVERS = ("offscreen", "dummy")   # render nothing anyone can see
_HUD_REFRESH_S = 0.25                         # numbers in the HUD change at most 4 times a second
_BG = (0, 0, 0)
_FG = (235, 235, 235)
_ACCENT = (255, 190, 40)
_MESSAGE_S = 3.0


class DisplayError(DynastreamError):
    pass


# Performer names of the tuning sites (the HUD shows these; the help overlay maps them to the sites).
SITE_LABELS = {"res3_in": "coarse", "up1_in": "mid", "out_in": "fine", "up1_norm": "strokes", "up2_norm": "detail", "act_in": "colour", "layer3_out": "layer3"}


def site_label(site: str) -> str:
    return SITE_LABELS.get(site, site)


def _load_llvm_users_before_gl() -> None:
    """Keep a window's GL and torch.compile's LLVM apart; call before SDL opens a window.

    Root cause of the segfault of `live` on Mesa desktops (gdb, 2026-12-01): SDL's X11 window
    uses GL for its framebuffer by default, so Mesa's ``swrast_dri.so`` is loaded, and it pulls
    ``libLLVM-15.so.1`` into the process's *global* symbol scope. ``triton/_C/libtriton.so``
    (imported by inductor, torch.compile's code generator) carries its own, newer LLVM and
    exports its ~24 k ``llvm::`` symbols with default visibility. Loaded after Mesa, the dynamic
    linker binds libtriton's references to ``llvm::DebugCounter::instance()`` and friends to the
    LLVM 15 definitions already in the global scope; triton's static initialiser
    (``_GLOBAL__sub_I_PassBuilder.cpp``) then runs its inlined ``MapVector`` code on LLVM 15's
    differently laid out object and frees a garbage pointer (SIGSEGV in ``free``). Loaded before
    Mesa, libtriton sits in its own local scope (Python loads extensions RTLD_LOCAL) and both
    LLVMs resolve to themselves.

    Two guards, each sufficient: the window blits a software surface, so GL framebuffer
    acceleration buys nothing and is off unless the user asks for it (``SDL_FRAMEBUFFER_ACCELERATION``),
    which keeps Mesa out of the process; and triton, where installed, is loaded first anyway.
    """
    os.environ.setdefault("SDL_FRAMEBUFFER_ACCELERATION", "0")
    if "triton" in sys.modules or importlib.util.find_spec("triton") is None:
        return
    try:
        import triton  # noqa: F401
    except Exception:  # a broken triton install only matters to torch.compile, which reports it
        pass


@dataclass
class HudInfo:
    """What the HUD shows; the live loop updates one instance in place."""

    model: str = ""
    untrained: bool = False
    device: str = ""
    size_wh: tuple[int, int] = (0, 0)
    sites: tuple[str, ...] = ()
    alpha_range: tuple[float, float] = (0.0, 1.0)
    alpha: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))    # used for the frame
    target: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    edit_site: int = ALL_SITES
    lfo: bool = False
    track: bool = False
    paused: bool = False
    recording: bool = False
    fps: float = 0.0
    latency_ms: float = 0.0
    dropped: int = 0
    status: str = ""            # a standing line (e.g. the compile in progress), until cleared
    sinks: str = ""             # the outputs that are live ("out: window, web (1 viewer)")
    learning: bool = False      # MIDI learn is waiting for a knob


def fit_rect(src_wh: tuple[int, int], box: pygame.Rect) -> pygame.Rect:
    """The largest rectangle of ``src_wh``'s aspect centred in ``box`` (letterbox / pillarbox)."""
    scale = min(box.width / src_wh[0], box.height / src_wh[1])
    w, h = max(1, round(src_wh[0] * scale)), max(1, round(src_wh[1] * scale))
    return pygame.Rect(box.x + (box.width - w) // 2, box.y + (box.height - h) // 2, w, h)


class Window:
    def __init__(self, size_wh: tuple[int, int], title: str = "dynastream", fullscreen: bool = False,
                 hud: bool = True, screenshot_dir: str = "."):
        _load_llvm_users_before_gl()
        if os.environ.get("SDL_VIDEO_X11_WMCLASS") == os.path.basename(sys.argv[0]):   # pygame's import sets it
            os.environ["SDL_VIDEO_X11_WMCLASS"] = "dynastream"   # the window's class, not "__main__.py"
        try:
            pygame.display.init()
        except pygame.error as e:
            raise DisplayError(f"no display is available ({e}); use --headless to run without a window, "
                               "or `dynastream render` for video files") from None
        driver = pygame.display.get_driver()
        if driver in _NO_WINDOW_DRIVERS and os.environ.get("SDL_VIDEODRIVER") != driver:
            pygame.display.quit()
            raise DisplayError("no display is available (no X11 or Wayland session); use --headless to run "
                               "without a window, or `dynastream render` for video files")
        pygame.font.init()
        pygame.display.set_caption(title)
        self.window_wh = tuple(size_wh)
        self.fullscreen = False
        self.view: View = "stylized"
        self.help = False
        self.hud = hud
        self.screenshot_dir = Path(screenshot_dir)
        self._font = pygame.font.Font(None, 20)
        self._text_cache: dict[str, pygame.Surface] = {}
        self._src_surfaces: dict[int, pygame.Surface] = {}
        self._scaled: dict[tuple, pygame.Surface] = {}
        self._hud_lines: list[str] = []
        self._hud_at = 0.0
        self._message = ""
        self._message_until = 0.0
        self._help_surface: Optional[pygame.Surface] = None
        self._help_sites: tuple[str, ...] = ()
        self._screenshot_pending = False
        self.screenshots: list[Path] = []
        try:
            self._screen = pygame.display.set_mode(self.window_wh, pygame.RESIZABLE)
        except pygame.error as e:
            pygame.display.quit()
            raise DisplayError(f"could not open a window ({e}); use --headless to run without one") from None
        if fullscreen:
            self.toggle_fullscreen()

    # -- state --------------------------------------------------------------------------------

    @property
    def wants_original(self) -> bool:
        return self.view != "stylized"

    def cycle_view(self) -> View:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        self._screen.fill(_BG)
        return self.view

    def toggle_help(self) -> None:
        self.help = not self.help

    def toggle_fullscreen(self) -> None:
        self.fullscreen = not self.fullscreen
        if self.fullscreen:
            self._screen = pygame.display.set_mode((0, 0), pygame.FULLSCREEN)
        else:
            for _ in range(2):  # some SDL drivers keep the fullscreen size on the first call
                self._screen = pygame.display.set_mode(self.window_wh, pygame.RESIZABLE)
                if self._screen.get_size() == self.window_wh:
                    break
        self._screen.fill(_BG)

    def message(self, text: str) -> None:
        """A line shown in the HUD for a few seconds."""
        self._message, self._message_until = text, time.perf_counter() + _MESSAGE_S

    def events(self) -> list:
        events = pygame.event.get()
        for e in events:
            if e.type == pygame.VIDEORESIZE and not self.fullscreen:
                self.window_wh = (max(e.w, 64), max(e.h, 48))
                self._screen = pygame.display.set_mode(self.window_wh, pygame.RESIZABLE)
                self._screen.fill(_BG)
        return events

    # -- drawing ------------------------------------------------------------------------------

    def _surface(self, rgb_hwc_u8: np.ndarray) -> pygame.Surface:
        """A pygame surface sharing ``rgb_hwc_u8``'s memory (ring slots live for the whole run, so
        each gets one surface, made once)."""
        surface = self._src_surfaces.get(id(rgb_hwc_u8))
        if surface is None:
            h, w = rgb_hwc_u8.shape[:2]
            surface = pygame.image.frombuffer(rgb_hwc_u8, (w, h), "RGB")
            self._src_surfaces[id(rgb_hwc_u8)] = surface
        return surface

    def _blit_scaled(self, target: pygame.Surface, rgb_hwc_u8: np.ndarray, rect: pygame.Rect,
                     area: Optional[pygame.Rect] = None) -> None:
        src = self._surface(rgb_hwc_u8)
        if src.get_size() == rect.size:
            scaled = src
        else:  # smoothscale needs the destination in the source's pixel format
            key = (rect.size, src.get_masks())
            scaled = self._scaled.get(key)
            if scaled is None:
                scaled = self._scaled[key] = pygame.Surface(rect.size, 0, src)
            pygame.transform.smoothscale(src, rect.size, scaled)
        if area is None:
            target.blit(scaled, rect)
        else:
            target.blit(scaled, (rect.x + area.x, rect.y + area.y), area)

    def _compose(self, target: pygame.Surface, stylized: np.ndarray, original: Optional[np.ndarray]) -> None:
        box = target.get_rect()
        src_wh = (stylized.shape[1], stylized.shape[0])
        if self.view == "side" and original is not None:
            left, right = box.copy(), box.copy()
            left.width = right.width = box.width // 2
            right.x = left.width
            self._blit_scaled(target, original, fit_rect(src_wh, left))
            self._blit_scaled(target, stylized, fit_rect(src_wh, right))
            return
        rect = fit_rect(src_wh, box)
        self._blit_scaled(target, stylized, rect)
        if self.view == "split" and original is not None:
            half = pygame.Rect(0, 0, rect.width // 2, rect.height)
            self._blit_scaled(target, original, rect, half)
            pygame.draw.line(target, _FG, (rect.x + half.width, rect.y), (rect.x + half.width, rect.bottom - 1))

    def show(self, stylized: np.ndarray, original: Optional[np.ndarray], info: HudInfo) -> None:
        """Draw one frame (uint8 RGB HWC) and flip."""
        if self._screenshot_pending:
            self._screenshot_pending = False
            try:
                self.screenshots.append(self._save_screenshot(stylized, original))
                self.message(f"saved {self.screenshots[-1]}")
            except (OSError, pygame.error) as e:
                self.message(f"could not save a screenshot in {self.screenshot_dir}: {e}")
        self._compose(self._screen, stylized, original)
        if self.hud:
            self._draw_hud(info)
        if self.help:
            if self._help_sites != tuple(info.sites):
                self._help_sites, self._help_surface = tuple(info.sites), None
            self._draw_help()
        pygame.display.flip()

    def _text(self, text: str, color=_FG) -> pygame.Surface:
        key = f"{color}{text}"
        surface = self._text_cache.get(key)
        if surface is None:
            if len(self._text_cache) > 256:
                self._text_cache.clear()
            surface = self._text_cache[key] = self._font.render(text, True, color, _BG)
        return surface

    def _draw_hud(self, info: HudInfo) -> None:
        now = time.perf_counter()
        if now - self._hud_at > _HUD_REFRESH_S:
            self._hud_at = now
            model = info.model + ("  [UNTRAINED: random weights]" if info.untrained else "")
            flags = [f for f, on in (("PAUSED", info.paused), ("LFO", info.lfo), ("TRACK", info.track),
                                     ("REC", info.recording), ("LEARN", info.learning)) if on]
            self._hud_lines = [
                model,
                f"{info.device}  {info.size_wh[0]}x{info.size_wh[1]}  {info.fps:4.1f} fps  "
                f"latency {info.latency_ms:3.0f} ms  dropped {info.dropped}  {' '.join(flags)}",
            ] + ([info.sinks] if info.sinks else [])
        y = 4
        for line in self._hud_lines:
            s = self._text(line)
            self._screen.blit(s, (6, y))
            y += s.get_height() + 2
        lo, hi = info.alpha_range
        span = (hi - lo) or 1.0
        bar_w = 120
        x0 = 10 + max((self._font.size(f"{site_label(site)}  -0.00")[0] for site in info.sites), default=0)
        for i, site in enumerate(info.sites):
            if i >= len(info.alpha):
                break
            edited = info.edit_site == ALL_SITES or info.edit_site == i
            color = _ACCENT if edited else _FG
            label = self._text(f"{site_label(site)}  {info.alpha[i]:+.2f}", color)
            self._screen.blit(label, (6, y))
            bar = pygame.Rect(x0, y + 3, bar_w, label.get_height() - 6)
            pygame.draw.rect(self._screen, _BG, bar)
            pygame.draw.rect(self._screen, color, bar, 1)
            fill = bar.copy()
            fill.width = max(1, int(bar_w * (float(info.alpha[i]) - lo) / span))
            pygame.draw.rect(self._screen, color, fill)
            if i < len(info.target):
                tx = x0 + int(bar_w * (float(info.target[i]) - lo) / span)
                pygame.draw.line(self._screen, (255, 60, 60), (tx, bar.y - 2), (tx, bar.bottom + 1), 2)
            y += label.get_height() + 2
        if info.status:
            s = self._text(info.status, _ACCENT)
            self._screen.blit(s, (6, y + 2))
            y += s.get_height() + 2
        if self._message and now < self._message_until:
            self._screen.blit(self._text(self._message, _ACCENT), (6, y + 2))

    def show_status(self, text: str) -> None:
        """Before the first frame: a black window with one centred line, so it is never silent."""
        self._screen.fill(_BG)
        s = self._text(text, _ACCENT)
        self._screen.blit(s, s.get_rect(center=self._screen.get_rect().center))
        pygame.display.flip()

    def _draw_help(self) -> None:
        if self._help_surface is None:
            title = self._font.render("keys", True, _ACCENT)
            lines = HELP_LINES + tuple((site_label(site), f"tuning site {site}") for site in self._help_sites)
            rows = [(self._font.render(keys, True, _ACCENT), self._font.render(what, True, _FG))
                    for keys, what in lines]
            key_w = max(k.get_width() for k, _ in rows) + 16
            line_h = max(k.get_height() for k, _ in rows) + 3
            w = key_w + max(d.get_width() for _, d in rows) + 24
            h = line_h * (len(rows) + 1) + 20
            self._help_surface = pygame.Surface((w, h), pygame.SRCALPHA)
            self._help_surface.fill((0, 0, 0, 190))
            self._help_surface.blit(title, (12, 10))
            for i, (k, d) in enumerate(rows, start=1):
                self._help_surface.blit(k, (12, 10 + i * line_h))
                self._help_surface.blit(d, (12 + key_w, 10 + i * line_h))
        rect = self._help_surface.get_rect(center=self._screen.get_rect().center)
        self._screen.blit(self._help_surface, rect)

    def request_screenshot(self) -> None:
        """Save the next frame's view (without HUD and help) as a PNG in the screenshot folder. It is
        taken while that frame is drawn, because ring slots are reused as soon as a frame is shown."""
        self._screenshot_pending = True

    def _save_screenshot(self, stylized: np.ndarray, original: Optional[np.ndarray]) -> Path:
        surface = pygame.Surface(self._screen.get_size())
        surface.fill(_BG)
        self._compose(surface, stylized, original)
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        n = 0
        while (path := self.screenshot_dir / f"dynastream-{stamp}-{n:03d}.png").exists():
            n += 1
        with atomic_open(path) as f:
            pygame.image.save(surface, f, path.name)   # the name hint picks the format
        return path

    def close(self) -> None:
        self._src_surfaces.clear()
        pygame.display.quit()
