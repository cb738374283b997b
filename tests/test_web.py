"""The live web page's server (aiohttp) over real sockets: WebSocket ops, the MJPEG stream, the
token for clients not on loopback, the Origin check; and sinks that are slow or fail."""

import asyncio
import json
import socket
import threading
import time

import aiohttp
import cv2
import numpy as np
import pytest

from dynastream.stream.alpha import AlphaController, ControllerConfig
from dynastream.stream.inputs import Inbox
from dynastream.stream.live import LiveConfig, run_live
from dynastream.stream.ring import Frame
from dynastream.stream.sinks import Sink, SinkThread, StageError
from dynastream.stream.stage import WebConfig, controller_state
from dynastream.stream.web import WebServer, WebSink, client_op, is_loopback

SITES = ("res3_in", "up1_in", "out_in")


def frame(value: int, size_wh=(64, 48)) -> Frame:
    f = Frame(np.full((size_wh[1], size_wh[0], 3), value, np.uint8), alpha=np.zeros(3, np.float32))
    f.rgb_hwc_u8[:, : size_wh[0] // 2] = 255 - value
    return f


@pytest.fixture
def server():
    controller = AlphaController(SITES, (0.0, 1.0), ControllerConfig(slew=0))
    inbox = Inbox()
    web = WebServer("127.0.0.1", 0, inbox, lambda: {**controller_state(controller, np.zeros(3)), "model": "m",
                                                     "model_name": "m", "models": ["m", "n"]})
    yield web, inbox, controller
    web.close()


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_websocket_ops_reach_the_controller_and_bad_ones_are_refused(server):
    web, inbox, controller = server

    async def talk():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(f"http://127.0.0.1:{web.port}/ws") as ws:
                state = json.loads((await ws.receive()).data)
                await ws.send_str(json.dumps({"alpha": 0.8, "site": "up1_in"}))
                await ws.send_str(json.dumps({"alpha": 0.2, "site": "*"}))
                await ws.send_str(json.dumps({"alpha": 0.9, "site": "out_in"}))
                await ws.send_str(json.dumps({"preset": 10}))
                await ws.send_str("{not json")
                refusals = [json.loads((await ws.receive()).data) for _ in range(2)]
                return state, refusals

    state, refusals = run(talk())
    assert state["type"] == "state" and state["sites"] == list(SITES) and state["labels"] == ["coarse", "mid", "fine"]
    assert state["range"] == [0.0, 1.0] and state["models"] == ["m", "n"]
    assert [r["type"] for r in refusals] == ["refused", "refused"]
    assert "preset must be a whole number from 0 to 9" in refusals[0]["reason"]
    deadline = time.monotonic() + 5
    while inbox.stats()["web"]["taken"] + inbox.stats()["web"]["refused"] < 5 and time.monotonic() < deadline:
        inbox.apply_all(controller)
        time.sleep(0.01)
    assert [round(float(t), 3) for t in controller.status().target] == [0.2, 0.2, 0.9]
    assert inbox.stats()["web"] == {"taken": 3, "refused": 2, "last_refused": "not JSON"}


def test_the_mjpeg_stream_carries_the_frames_published(server):
    web, inbox, controller = server
    sink = SinkThread(WebSink(web, (64, 48)), (48, 64, 3), 3)

    async def watch():
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{web.port}/stream.mjpg") as response:
                assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
                reader = aiohttp.MultipartReader.from_response(response)
                parts = []
                while len(parts) < 2:
                    part = await reader.next()
                    parts.append(await part.read())
                return parts

    def feed():
        for value in range(40, 240, 10):   # until the viewer has two frames
            sink.offer(frame(value))
            time.sleep(0.05)

    feeder = threading.Thread(target=feed)
    feeder.start()
    parts = run(watch())
    feeder.join()
    sink.stop()
    sink.join(5)
    pictures = [cv2.imdecode(np.frombuffer(p, np.uint8), cv2.IMREAD_COLOR) for p in parts]
    assert all(p.shape == (48, 64, 3) for p in pictures)
    assert abs(int(pictures[0][24, 48, 0]) - int(pictures[0][24, 8, 0])) > 100, "the frame's two halves"
    assert sink.stats()["sent"] >= 2 and sink.stats()["failed"] is False


def test_clients_off_loopback_need_the_token_and_other_origins_are_refused():
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("10.254.254.254", 1))   # no packet is sent: this picks the address of the outward interface
        lan_ip = probe.getsockname()[0]
    except OSError:
        pytest.skip("no network interface besides loopback")
    finally:
        probe.close()
    if is_loopback(lan_ip):
        pytest.skip("no network interface besides loopback")
    web = WebServer("0.0.0.0", 0, Inbox(), lambda: {}, token="s3cret-token")
    try:
        async def status(url, **kw):
            async with aiohttp.ClientSession() as session:
                async with session.get(url, **kw) as response:
                    return response.status

        lan = f"http://{lan_ip}:{web.port}"
        assert run(status(f"{lan}/")) == 403
        assert run(status(f"{lan}/?token=wrong-token")) == 403
        assert run(status(f"{lan}/?token=s3cret-token")) == 200
        assert run(status(f"http://127.0.0.1:{web.port}/")) == 200          # loopback needs none
        assert web.url == f"{lan}/?token=s3cret-token"

        async def ws_status(origin):
            async with aiohttp.ClientSession() as session:
                try:
                    async with session.ws_connect(f"http://127.0.0.1:{web.port}/ws", origin=origin):
                        return 101
                except aiohttp.WSServerHandshakeError as e:
                    return e.status

        assert run(status(f"http://127.0.0.1:{web.port}/", headers={"Host": f"evil.example:{web.port}"})) == 403
        assert run(ws_status("http://evil.example")) == 403
        assert run(ws_status(f"http://127.0.0.1:{web.port}")) == 101
    finally:
        web.close()


def test_page_messages_are_checked():
    assert client_op('{"alpha": 0.5}').site is None
    for text in ('{"alpha": "x"}', '{"alpha": 0.5, "site": 3}', '{"lfo": 2}', '{"model": ""}', '[1]', '{"zoom": 1}'):
        with pytest.raises(ValueError):
            client_op(text)


def test_a_port_in_use_is_one_sentence(server):
    web, inbox, controller = server
    with pytest.raises(StageError, match=f"--web: cannot listen on 127.0.0.1 port {web.port}"):
        WebServer("127.0.0.1", web.port, Inbox(), lambda: {})


class SlowSink(Sink):
    name = "slow"

    def __init__(self):
        self.seen = []

    def write(self, frame):
        self.seen.append(int(frame.rgb_hwc_u8[0, -1, 0]))
        time.sleep(0.05)


class BrokenSink(Sink):
    name = "broken"

    def write(self, frame):
        raise OSError("the device went away")


def test_a_slow_sink_drops_and_a_dead_one_is_skipped_without_holding_up_the_caller():
    slow, notices = SlowSink(), []
    slow_thread = SinkThread(slow, (48, 64, 3), 3)
    broken = SinkThread(BrokenSink(), (48, 64, 3), 3, notice=notices.append)
    start = time.perf_counter()
    for i in range(100):
        slow_thread.offer(frame(i))
        broken.offer(frame(i))
    offered_in = time.perf_counter() - start
    for s in (slow_thread, broken):
        s.stop()
        s.join(5)
    assert offered_in < 0.5, "offers never wait for the sink"
    assert slow_thread.written + slow_thread.dropped == 100 and slow_thread.dropped > 80
    assert slow.seen[-1] == 99, "the newest frame is the one kept"
    assert broken.written == 0 and broken.dropped == 100 and broken.stats()["failed"]
    assert notices == ["output broken stopped: the device went away"]


def test_a_viewer_that_never_reads_does_not_slow_the_live_run():
    """A stalled browser (it asks for the stream, then reads nothing) holds up only itself."""
    urls = []
    config = LiveConfig(source="demo", headless=True, device="cpu", backend="eager", size=(160, 120), frames=60,
                        fps=30.0, models=("untrained:lite",), web=WebConfig(port=0))
    stalled = []

    def report(line):
        if line.startswith("live: web page on "):
            port = int(line.rsplit(":", 1)[1].strip("/"))
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", port))
            s.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            stalled.append(s)
            urls.append(line)

    stats = run_live(config, report=report)
    stalled[0].close()
    assert urls and stats.shown == 60 and stats.ended_by == "--frames 60"
    web = stats.sinks["web"]
    assert web["sent"] < web["encoded"] - 10, f"the viewer did stall ({web})"
    # ... and neither the sink's thread (it encoded every frame) nor the pipeline waited for it
    assert web["written"] == 60 and web["encoded"] >= 55 and web["dropped"] <= 5 and not web["failed"]


def test_virtual_camera_without_a_backend_says_what_to_install():
    import glob

    if glob.glob("/sys/devices/virtual/video4linux/video*"):
        pytest.skip("this machine has a v4l2loopback device")
    config = LiveConfig(source="demo", headless=True, device="cpu", backend="eager", size=(64, 48), frames=3,
                        models=("untrained:lite",), virtual_cam=True)
    with pytest.raises(StageError) as e:
        run_live(config, report=lambda line: None)
    message = str(e.value)
    assert message.startswith("--virtual-cam found no virtual camera device") and "v4l2loopback" in message
    assert "OBS" in message and "\n" not in message


def test_the_hud_names_the_live_outputs():
    from dynastream.stream.live import LivePipeline

    config = LiveConfig(source="demo", device="cpu", backend="eager", size=(64, 48), window=(64, 48), frames=5,
                        models=("untrained:lite",), web=WebConfig(port=0))
    pipeline = LivePipeline(config, report=lambda line: None)
    stats = pipeline.run()
    assert stats.shown == 5 and pipeline.hud.sinks == "out: window, web (0 viewers)"
