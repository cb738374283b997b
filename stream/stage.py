"""Live on stage: the ways in beside keys and MIDI (OSC, the web page), the ways out beside the
window and the recorder (web preview, virtual camera), and MIDI learn. ``LivePipeline`` owns one
``Stage`` and calls it from its main thread: ``poll`` between frames (ops from the network reach
the controller there), ``offer`` for each frame shown, ``close`` at the end.
"""

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import yaml

from dynastream import configs
from dynastream.configs.schema import ConfigError, file_or, option, text, whole_number
from dynastream.nets.atomic import atomic_open
from dynastream.nets.errors import short_repr
from dynastream.stream.alpha import ALL_SITES, AlphaController, Command
from dynastream.stream.display import site_label
from dynastream.stream.inputs import Inbox
from dynastream.stream.midi import MidiMap
from dynastream.stream.osc import OscMap
from dynastream.stream.ring import Frame
from dynastream.stream.sinks import SinkThread, StageError, VirtualCamSink  # noqa: F401 (StageError: raised by these)

LOOPBACK = "127.0.0.1"


PACKAGED_OSC_MAP = str(configs.path("osc.yaml"))
_PORT = whole_number(0, 65535)   # 0: any free port (the one taken is printed)


def _host(v, label) -> str:
    name = text(v, label).strip()
    if not name or len(name) > 255 or any(c.isspace() for c in name):
        raise ConfigError(f"{label} must be a host name or address such as 127.0.0.1, not {short_repr(v)}")
    return name


def _token(v, label) -> str:
    token = text(v, label)
    if len(token) < 8 or len(token) > 200 or not all(c.isalnum() or c in "-_." for c in token):
        raise ConfigError(f"{label} must be 8 to 200 letters, digits, '-', '_' or '.'")
    return token


@dataclass(frozen=True)
class OscConfig:
    """live.yaml's osc section; ``osc_map`` is what the loader read from ``map`` (when listening)."""

    port: Optional[int] = option(None, parse=_PORT)   # --osc PORT: listen for OSC (UDP) there
    host: str = option(LOOPBACK, parse=_host)
    map: str = option(PACKAGED_OSC_MAP, parse=file_or(PACKAGED_OSC_MAP), relative=True)   # extra addresses
    osc_map: OscMap = option(OscMap(), derived=True)


@dataclass(frozen=True)
class WebConfig:
    """live.yaml's web section."""

    port: Optional[int] = option(None, parse=_PORT)   # --web PORT: serve the page there
    host: str = option(LOOPBACK, parse=_host)
    token: Optional[str] = option(None, parse=_token)   # needed by clients not on loopback; None: a new one then


def user_midi_map() -> Path:
    """The user's own MIDI map, which MIDI learn writes unless --midi-map names another file
    ($XDG_CONFIG_HOME/dynastream/midi.yaml, by default ~/.config/dynastream/midi.yaml); read in
    place of the packaged configs/midi.yaml when it exists. The packaged file is never written."""
    base = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "dynastream" / "midi.yaml"


def save_midi_map(midi_map: MidiMap, path: Path) -> None:
    """The map as YAML, written atomically (nets.atomic), in the form configs/midi.yaml has."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = ("# MIDI map for dynastream live --midi, saved by MIDI learn (l in the live window).\n"
            "# cc: controller number -> alpha (the site(s) being edited) or a site name; notes: note -> action.\n"
            + yaml.safe_dump(midi_map.to_dict(), sort_keys=False))
    with atomic_open(path, "w") as f:
        f.write(text)


class MidiLearn:
    """l: the next CC moved is bound to what tab edits (all sites: ``alpha``, else that site),
    and the map is saved to the user's map file."""

    def __init__(self, path: Optional[str]):
        self.path = Path(path) if path else user_midi_map()
        self.active = False
        self.target = "alpha"

    def start(self, controller: AlphaController) -> str:
        if self.active:
            self.active = False
            return "MIDI learn off"
        edit = controller.status().edit_site
        self.target = "alpha" if edit == ALL_SITES else controller.sites[edit]
        self.active = True
        what = "alpha (the sites being edited)" if self.target == "alpha" else site_label(self.target)
        return f"MIDI learn: move a knob to bind it to {what}; l cancels"

    def feed(self, messages: list, midi_map: MidiMap) -> tuple[MidiMap, Optional[str]]:
        """The map after these messages (the first CC on the map's channel is bound) and what to
        tell the performer."""
        for status, number, _value in messages:
            channel = (status & 0x0F) + 1
            if status & 0xF0 != 0xB0 or (midi_map.channel is not None and channel != midi_map.channel):
                continue
            self.active = False
            learned = midi_map.bind(number, self.target)
            try:
                save_midi_map(learned, self.path)
            except OSError as e:
                return learned, f"CC {number} -> {self.target}; could not save {self.path}: {e.strerror or e}"
            return learned, f"CC {number} -> {self.target}, saved to {self.path}"
        return midi_map, None


class Stage:
    """The network inputs and the extra sinks of one live session."""

    def __init__(self, osc: OscConfig, web: WebConfig, virtual_cam: bool, size_wh: tuple[int, int], fps: float,
                 n_sites: int, state: Callable[[], dict], notice: Callable[[str], None], report: Callable[[str], None]):
        self.inbox = Inbox()
        self.sinks: list[SinkThread] = []
        self.osc = self.web = None
        self._state = state
        shape = (size_wh[1], size_wh[0], 3)
        try:
            if osc.port is not None:
                from dynastream.stream.osc import OscServer

                self.osc = OscServer(osc.host, osc.port, self.inbox, osc.osc_map)
                report(f"live: OSC on udp://{self.osc.host}:{self.osc.port} (/dynastream/alpha, /dynastream/site/NAME, "
                       "/dynastream/preset, /dynastream/model, /dynastream/lfo)")
            if web.port is not None:
                from dynastream.stream.web import WebServer, WebSink, is_loopback, new_token

                token = web.token
                if token is None and not is_loopback(web.host):
                    token = new_token()
                self.web = WebServer(web.host, web.port, self.inbox, self.web_state, token)
                self.sinks.append(SinkThread(WebSink(self.web, size_wh), shape, n_sites, notice=notice))
                report(f"live: web page on {self.web.url}")
            if virtual_cam:
                camera = VirtualCamSink(size_wh, fps)
                self.sinks.append(SinkThread(camera, shape, n_sites, notice=notice))
                report(f"live: virtual camera {camera.device}")
        except BaseException:
            self.close()
            raise

    # -- main thread --------------------------------------------------------------------------

    def poll(self, controller: AlphaController) -> list[Command]:
        """Apply what OSC and the page sent since the last call; the model commands come back."""
        return self.inbox.apply_all(controller)

    def offer(self, frame: Frame) -> None:
        for sink in self.sinks:
            sink.offer(frame)

    def live_sinks(self, window: bool) -> str:
        names = (["window"] if window else []) + [s.sink.describe() for s in self.sinks if s.live]
        return "out: " + (", ".join(names) if names else "none")

    def close(self) -> None:
        if self.osc is not None:
            self.osc.close()
        for sink in self.sinks:
            sink.stop()
        deadline = time.monotonic() + 3.0
        for sink in self.sinks:
            sink.join(max(0.0, deadline - time.monotonic()))
        if self.web is not None:
            self.web.close()

    def sink_stats(self) -> dict:
        return {s.name: s.stats() for s in self.sinks}

    def input_stats(self) -> dict:
        return self.inbox.stats()

    # -- the web page's state (its event loop's thread) ---------------------------------------

    def web_state(self) -> dict:
        state = self._state()
        state["sinks"] = [s.sink.describe() for s in self.sinks if s.live]
        return state


def controller_state(controller: AlphaController, alpha: np.ndarray) -> dict:
    """What the page shows of the controller: sites, range, the α in use and the targets."""
    status = controller.status()
    alpha_list = [round(float(a), 4) for a in alpha[:len(status.sites)]]
    alpha_list += [round(float(t), 4) for t in status.target[len(alpha_list):]]
    return {"sites": list(status.sites), "labels": [site_label(s) for s in status.sites],
            "range": list(status.alpha_range), "alpha": alpha_list,
            "target": [round(float(t), 4) for t in status.target], "edit": status.edit_site,
            "lfo": status.lfo, "track": status.track}
