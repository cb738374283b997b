"""OSC in: real packets (python-osc's client and bundle builder) over UDP loopback into the one
AlphaController, and through a headless live run."""

import socket
import time

import numpy as np
import pytest
from pythonosc.osc_bundle_builder import IMMEDIATELY, OscBundleBuilder
from pythonosc.osc_message_builder import OscMessageBuilder
from pythonosc.udp_client import SimpleUDPClient

from dynastream.configs.schema import ConfigError
from dynastream.stream.alpha import Action, AlphaController, Command, ControllerConfig, ControlsError
from dynastream.stream.config import load_live_config, load_osc_map
from dynastream.stream.inputs import Inbox
from dynastream.stream.live import LiveConfig, run_live
from dynastream.stream.osc import OscMap, OscServer
from dynastream.stream.sinks import StageError
from dynastream.stream.stage import OscConfig

SITES = ("res3_in", "up1_in", "out_in")


def drain(inbox: Inbox, controller: AlphaController, expect: int, timeout: float = 5.0) -> list:
    """Apply ops as the live loop does until ``expect`` messages were counted (taken or refused)."""
    commands = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        commands += inbox.apply_all(controller)
        counts = inbox.stats()["osc"]
        if counts["taken"] + counts["refused"] >= expect:
            return commands
        time.sleep(0.01)
    raise AssertionError(f"only {inbox.stats()} of {expect} messages arrived")


@pytest.fixture
def osc_setup():
    inbox = Inbox()
    osc_map = OscMap("unit", {"/1/fader1": "alpha", "/1/fader2": "out_in", "/1/push1": "preset 9",
                              "/1/push2": "model next", "/1/toggle1": "lfo"})
    server = OscServer("127.0.0.1", 0, inbox, osc_map)
    controller = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0))
    yield server, inbox, controller, SimpleUDPClient("127.0.0.1", server.port)
    server.close()


def target(controller: AlphaController) -> list:
    return [round(float(t), 4) for t in controller.status().target]


def test_fixed_addresses_drive_the_controller(osc_setup):
    server, inbox, controller, client = osc_setup
    client.send_message("/dynastream/alpha", 0.25)                 # every site (none picked by tab)
    client.send_message("/dynastream/site/out_in", 0.75)
    drain(inbox, controller, 2)
    assert target(controller) == [0.25, 0.25, 0.75]
    controller.cycle_site()                                          # tab: edit res3_in alone
    client.send_message("/dynastream/alpha", 1)                      # an OSC int is a number too
    drain(inbox, controller, 3)
    assert target(controller) == [1.0, 0.25, 0.75]
    client.send_message("/dynastream/preset", 0)                     # preset 0: the edited site to the lowest α
    client.send_message("/dynastream/lfo", 1)
    drain(inbox, controller, 5)
    assert target(controller)[0] == 0.0 and controller.status().lfo
    client.send_message("/dynastream/lfo", 0)
    client.send_message("/dynastream/model", "next")
    client.send_message("/dynastream/model", "fast-dual-gold-blue-red")
    commands = drain(inbox, controller, 8)
    assert not controller.status().lfo
    assert commands == [Command(Action.NEXT_MODEL), Command(Action.LOAD_MODEL, "fast-dual-gold-blue-red")]
    assert inbox.stats()["osc"] == {"taken": 8, "refused": 0}


def test_out_of_range_is_clamped_like_every_alpha_and_bad_messages_are_refused(osc_setup):
    server, inbox, controller, client = osc_setup
    client.send_message("/dynastream/site/res3_in", 7.5)             # clamped to the range, as keys and MIDI are
    client.send_message("/dynastream/site/up1_in", -3.0)
    drain(inbox, controller, 2)
    assert target(controller) == [1.0, 0.0, 0.5]
    bad = [("/dynastream/alpha", "loud"), ("/dynastream/alpha", float("nan")), ("/dynastream/alpha", [0.1, 0.2]),
           ("/dynastream/site/layer9", 0.5), ("/dynastream/preset", 12), ("/dynastream/lfo", 0.5),
           ("/dynastream/volume", 1.0), ("/elsewhere", 1.0), ("/dynastream/alpha", True)]
    for address, value in bad:
        client.send_message(address, value)
    drain(inbox, controller, 2 + len(bad))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
        raw.sendto(b"\x00garbage", ("127.0.0.1", server.port))
    drain(inbox, controller, 2 + len(bad) + 1)
    assert target(controller) == [1.0, 0.0, 0.5], "no refused message moved alpha"
    stats = inbox.stats()["osc"]
    assert stats["taken"] == 2 and stats["refused"] == len(bad) + 1
    assert stats["last_refused"] == "not an OSC packet"


def test_a_bundle_and_the_address_map(osc_setup):
    server, inbox, controller, client = osc_setup
    bundle = OscBundleBuilder(IMMEDIATELY)
    for address, value in (("/1/fader1", 0.5), ("/1/fader2", 1.0)):
        message = OscMessageBuilder(address)
        message.add_arg(value)
        bundle.add_content(message.build())
    client.send(bundle.build())                                      # two messages in one datagram
    drain(inbox, controller, 2)
    assert target(controller) == [0.5, 0.5, 1.0]                     # values: unit spans the range
    client.send_message("/1/push1", 0.0)                             # a button's release: nothing
    client.send_message("/1/push1", 1.0)                             # its press: preset 9
    client.send_message("/1/push2", 1.0)
    commands = drain(inbox, controller, 4)
    assert target(controller) == [1.0, 1.0, 1.0] and commands == [Command(Action.NEXT_MODEL)]


def test_a_dual_model_range_and_a_port_in_use():
    inbox = Inbox()
    server = OscServer("127.0.0.1", 0, inbox)
    try:
        controller = AlphaController(SITES, (-1.0, 1.0), ControllerConfig(slew=0))
        SimpleUDPClient("127.0.0.1", server.port).send_message("/dynastream/alpha", -0.5)
        drain(inbox, controller, 1)
        assert target(controller) == [-0.5, -0.5, -0.5]
        with pytest.raises(StageError, match=f"--osc: cannot listen on 127.0.0.1 port {server.port}"):
            OscServer("127.0.0.1", server.port, Inbox())
    finally:
        server.close()


def test_osc_map_files_and_flags(tmp_path):
    good = tmp_path / "osc.yaml"
    good.write_text("values: unit\naddresses:\n  /fader: alpha\n  /knob: up1_in\n  /pad: preset 3\n")
    assert load_osc_map(good) == OscMap("unit", {"/fader": "alpha", "/knob": "up1_in", "/pad": "preset 3"})
    for text, needle in (("values: percent\n", "values must be alpha or unit"),
                         ("addresses:\n  fader: alpha\n", "must start with /"),
                         ("addresses:\n  /dynastream/alpha: alpha\n", "whose addresses are fixed"),
                         ("addresses:\n  /pad: preset 12\n", "use alpha, a site name"),
                         ("adresses: {}\n", "unknown key 'adresses'")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=needle):
            load_osc_map(bad)
    config = load_live_config(overrides={"osc.port": ("9000", "--osc"), "osc.map": (str(good), "--osc-map")})
    assert config.osc.port == 9000 and config.osc.host == "127.0.0.1"
    assert config.osc.osc_map.addresses["/knob"] == "up1_in"
    with pytest.raises(ConfigError, match="--osc must be a whole number from 0 to 65535"):
        load_live_config(overrides={"osc.port": ("70000", "--osc")})
    with pytest.raises(ControlsError):
        OscMap("alpha", {"/x": 3})


def test_live_run_takes_osc_with_slew_and_reports_it():
    """OSC moves α in a headless run; the controller's slew ramps it; the summary counts it."""
    frames = []
    sent = []
    port = []

    def on_shown(frame):
        frames.append(frame.alpha.copy())
        if len(frames) == 5:
            client = SimpleUDPClient("127.0.0.1", port[0])
            client.send_message("/dynastream/site/out_in", 1.0)
            client.send_message("/dynastream/site/nowhere", 1.0)
            sent.append(len(frames))

    lines = []

    def report(line):
        lines.append(line)
        if line.startswith("live: OSC on udp://"):
            port.append(int(line.split("udp://")[1].split()[0].rsplit(":", 1)[1]))

    config = LiveConfig(source="demo", headless=True, device="cpu", backend="eager", size=(64, 48), frames=45,
                        fps=30.0, controls=ControllerConfig(slew=2.0), models=("untrained:lite",),
                        osc=OscConfig(port=0))
    stats = run_live(config, on_shown=on_shown, report=report)
    out_in = np.array([a[2] for a in frames])
    assert np.all(out_in[:5] == 0.5)
    assert out_in[-1] == 1.0, "alpha reached the OSC target"
    steps = np.diff(out_in)
    assert steps.min() >= 0 and steps.max() < 0.5, "slew ramps it over several frames"
    assert np.count_nonzero(steps) >= 3
    assert stats.inputs["osc"]["taken"] == 1 and stats.inputs["osc"]["refused"] == 1
    assert stats.alpha_last == {"res3_in": 0.5, "up1_in": 0.5, "out_in": 1.0}
    assert "osc 1 messages taken, 1 refused" in lines[-1]
