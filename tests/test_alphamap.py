"""α maps (stream.alphamap, nets.tuning, the engine's map input) and α from audio (stream.audiotrack)."""

from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from dynastream import nets
from dynastream.nets import DynamicNet
from dynastream.nets.checkpoint import DEFAULT_MODEL
from dynastream.stream.alphamap import AlphaMapError, open_map, parse_spec
from dynastream.stream.audiotrack import AudioOptions
from dynastream.stream.engine import Engine, EngineConfig
from dynastream.stream.keyframes import load_track
from dynastream.stream.render import RenderConfig, render
from dynastream.stream.writer import VideoOptions
from tests.media import make_video, pattern_frame, read_frames


def strong_net(mode: str = "normal", seed: int = 0) -> DynamicNet:
    """A lite net whose tuning blocks are strong enough for α to show everywhere."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = DynamicNet.for_style("lite", mode)
        blocks = [*net.higher.values(), *(net.lower.values() if net.lower is not None else [])]
        for p in (p for b in blocks for p in b.parameters()):
            torch.nn.init.normal_(p, 0.0, 0.1)
    return net.eval()


def half_map(path, h: int, w: int):
    m = np.zeros((h, w), np.uint8)
    m[:, : w // 2] = 255
    cv2.imwrite(str(path), m)
    return path


# -- the net -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["normal", "dual"])
def test_a_map_of_ones_is_exactly_no_map_and_a_map_of_zeros_is_the_main_net(mode):
    net = strong_net(mode)
    x = torch.rand(2, 3, 37, 50, generator=torch.Generator().manual_seed(0))
    alpha_bs = torch.tensor([[0.3, 0.7, 1.0], [-0.5, 0.2, 0.9]])           # per sample and per site
    with torch.no_grad():
        plain = net(x, alpha_bs)
        for ones in (torch.ones(2, 1, 37, 50), torch.ones(1, 1, 37, 50)):   # per sample, or shared
            assert torch.equal(net(x, alpha_bs, ones), plain)
        assert torch.equal(net(x, alpha_bs, torch.zeros(1, 1, 37, 50)), net(x, 0.0))
        assert not torch.equal(net(x, alpha_bs, torch.rand(2, 1, 37, 50)), plain)
    with pytest.raises(ValueError, match="does not fit a 50x37 input"):
        net(x, alpha_bs, torch.ones(2, 1, 36, 50))


def test_a_map_scales_each_sample_of_a_batch_on_its_own():
    net = strong_net()
    x = torch.rand(2, 3, 32, 40, generator=torch.Generator().manual_seed(1))
    m = torch.rand(2, 1, 32, 40, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        both = net(x, torch.tensor([0.4, 1.0]), m)
        one = net(x[1:], 1.0, m[1:])
    assert torch.allclose(both[1:], one, atol=1e-5)


# -- the engine: half a picture at α = 1, half at α = 0 ------------------------------------------

def test_half_white_half_black_map_gives_alpha1_left_and_alpha0_right(tmp_path):
    """Instance norm after each site normalises over the whole picture, so a half cannot equal the
    uniform render exactly: away from the seam each half is far closer to its own α's render (the
    zoo's default morph: about 2.8x on the α = 1 side, 3.3x on the α = 0 side; see README)."""
    h, w, seam = 96, 160, 80
    src = tmp_path / "in.png"
    cv2.imwrite(str(src), cv2.cvtColor(pattern_frame(3, h, w), cv2.COLOR_RGB2BGR))
    spec = str(half_map(tmp_path / "half.png", h, w))
    outs = {}
    for name, alpha, alpha_map in (("one", 1.0, None), ("zero", 0.0, None), ("map", 1.0, spec)):
        render(src, tmp_path / f"{name}.png", RenderConfig(model=DEFAULT_MODEL, alpha=alpha,
                                                           alpha_map=alpha_map))
        outs[name] = cv2.imread(str(tmp_path / f"{name}.png")).astype(np.int32)
    left, right = slice(0, seam - 24), slice(seam + 24, w)

    def dist(a, b, cols):
        return float(np.abs(outs[a][:, cols] - outs[b][:, cols]).mean())

    assert dist("one", "zero", left) > 20 and dist("one", "zero", right) > 20    # α shows on both sides
    assert dist("map", "one", left) < 0.5 * dist("map", "zero", left)
    assert dist("map", "zero", right) < 0.4 * dist("map", "one", right)


def two_maps(h: int, w: int) -> np.ndarray:
    radial = open_map("radial:cx=0.4,radius=0.25", (w, h), 25.0)
    linear = open_map("linear:30,width=0.5", (w, h), 25.0)
    return np.stack([m.map_into(np.empty((h, w), np.uint8), 0, 0) for m in (radial, linear)])


@pytest.mark.parametrize("backend, mode", [("onnxruntime", "dual"), ("compile", "normal")])
def test_a_map_renders_the_same_through_eager_compiled_and_onnx(backend, mode):
    """Per-site α, a batch of two with a map each; the compiled engine is the smallest that
    compiles quickly (dual mode is the same graph with a second set of blocks)."""
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
    net = strong_net(mode)
    h, w = (36, 44) if backend == "onnxruntime" else (24, 32)
    frames = [pattern_frame(i, h, w) for i in range(2)]
    alpha_bs = np.array([[1.0, 0.8, 0.6], [-1.0, -0.5, 0.5] if mode == "dual" else [0.3, 1.0, 0.5]], np.float32)
    maps = two_maps(h, w)
    eager = Engine(net, EngineConfig(device="cpu", backend="eager", max_batch=2, alpha_map=True), (h, w))
    expected = eager.run(frames, alpha_bs, maps).astype(np.int32)
    without = Engine(net, EngineConfig(device="cpu", backend="eager", max_batch=2), (h, w))
    assert np.array_equal(eager.run(frames, alpha_bs), without.run(frames, alpha_bs))   # no map given: all 255
    assert np.abs(expected - without.run(frames, alpha_bs)).mean() > 2                 # the map matters
    engine = Engine(net, EngineConfig(device="cpu", backend=backend, max_batch=2, alpha_map=True), (h, w))
    assert engine.info()["backend"] == backend
    d = np.abs(engine.run(frames, alpha_bs, maps).astype(np.int32) - expected)
    assert d.max() <= 1 and (d == 0).mean() > 0.99                    # float rounding only
    other = two_maps(h, w)[::-1].copy()                               # a new map: no recompile, a new picture
    swapped = engine.run(frames, alpha_bs, other).copy()             # run returns a view of its buffer
    assert not np.array_equal(swapped, engine.run(frames, alpha_bs, maps))


def test_export_has_the_map_as_an_input(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from dynastream.stream.cli import main

    assert main(["export", "untrained:lite", "-o", str(tmp_path / "m.onnx"), "--alpha-map"]) == 0
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["x", "alpha", "alpha_map"]
    net = nets.load("untrained:lite")
    x, a, m = torch.rand(1, 3, 30, 42), torch.full((1, 3), 0.8), torch.rand(1, 1, 30, 42)
    with torch.no_grad():
        expected = net(x, a, m).numpy()
    got = session.run(None, {"x": x.numpy(), "alpha": a.numpy(), "alpha_map": m.numpy()})[0]
    assert np.abs(got - expected).max() < 1e-4


# -- map sources -------------------------------------------------------------------------------

def test_shapes_and_keyframed_parameters(tmp_path):
    out = np.empty((60, 80), np.uint8)
    radial = open_map("radial:radius=0.2,width=0.1", (80, 60), 25.0)
    radial.map_into(out, 0.0, 0)
    assert out[30, 40] == 255 and out[0, 0] == 0 and out[30, 79] == 0
    linear = open_map("linear:90", (80, 60), 25.0)                  # rising upwards
    linear.map_into(out, 0.0, 0)
    assert out[0].min() > 200 and out[-1].max() < 55 and (out == out[:, :1]).all()
    (tmp_path / "cx.yaml").write_text("keys:\n  - {t: 0, alpha: 0.2}\n  - {t: 1, alpha: 0.8}\n")
    moving = open_map(f"radial:cx={tmp_path / 'cx.yaml'},radius=0.1,width=0.05", (80, 60), 25.0)
    for t, x in ((0.0, 16), (0.5, 40), (1.0, 64)):
        moving.map_into(out, t, int(t * 25))
        assert abs(float(np.flatnonzero(out[30] == 255).mean()) - x) <= 1.5


def test_a_video_map_is_frame_synced_and_holds_or_loops_at_its_end(tmp_path):
    path = tmp_path / "map.mkv"
    with av.open(str(path), "w") as c:
        s = c.add_stream("ffv1", rate=10)
        s.width, s.height, s.pix_fmt = 32, 24, "gray"
        for k in range(4):
            frame = av.VideoFrame.from_ndarray(np.full((24, 32), 60 * k, np.uint8), format="gray")
            for p in s.encode(frame):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    out = np.empty((12, 16), np.uint8)
    hold = open_map(str(path), (16, 12), 10.0)
    assert [int(hold.map_into(out, k / 10, k)[0, 0]) for k in (0, 1, 2, 3, 5, 9)] == [0, 60, 120, 180, 180, 180]
    loop = open_map(str(path), (16, 12), 10.0, at_end="loop")
    assert [int(loop.map_into(out, k / 10, k)[0, 0]) for k in (0, 3, 4, 5, 9, 1)] == [0, 180, 0, 60, 60, 60]
    hold.close()
    loop.close()


@pytest.mark.parametrize("spec, message", [
    ("nothere.png", "'nothere.png' is neither a file nor a shape"),
    ("radial:radius=-1", "radius must be from 0 to 100, not -1"),
    ("radial:size=2", "radial has no parameter 'size' (it has cx, cy, radius, width, invert)"),
    ("radial:cx", "'cx' is not NAME=VALUE"),
    ("linear", "linear needs an angle in degrees"),
    ("linear:abc", "angle must be a number or a keyframe file"),
    ("radial:cx=missing.yaml", "keyframe file missing.yaml for cx does not exist"),
])
def test_bad_map_specs_are_one_sentence(spec, message):
    with pytest.raises(AlphaMapError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_spec(spec)


def test_bad_maps_on_the_command_line_exit_2_and_write_nothing(tmp_path, capsys):
    from dynastream.stream.cli import main

    src = tmp_path / "in.mp4"
    make_video(src, n_frames=4)
    (tmp_path / "broken.png").write_bytes(b"not an image at all")
    (tmp_path / "r.yaml").write_text("keys:\n  - {t: 0, alpha: 0.1}\n  - {t: 1, alpha: -3}\n")
    for spec, message in ((str(tmp_path / "broken.png"), "as an image (corrupt or not an image)"),
                          (f"radial:radius={tmp_path / 'r.yaml'}", "radius -3 is outside 0 to 100"),
                          ("radial:width=0", "width must be from 0.001 to 100, not 0")):
        assert main(["render", str(src), "-o", str(tmp_path / "out.mp4"), "--alpha-map", spec, "-q"]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and err.startswith("dynastream: error: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.png", "in.mp4", "r.yaml"]


def test_render_with_a_map_and_a_batch_matches_batch_1(tmp_path):
    src = tmp_path / "in.mp4"
    make_video(src, n_frames=6, width=48, height=32)
    outs = []
    for batch in (1, 3):
        out = tmp_path / f"b{batch}.mkv"
        config = RenderConfig(model=DEFAULT_MODEL, alpha=1.0, alpha_map="radial:radius=0.3", batch=batch,
                              device="cpu", video=VideoOptions("ffv1"))
        assert render(src, out, config).frames == 6
        outs.append(read_frames(out)[0])
    # the same maths; oneDNN may sum a batch of 3 in another order, which can move a value across a
    # rounding boundary of the 8-bit output (1 level, on 0.02 % of the values with the default model)
    for a, b in zip(*outs):
        assert int(np.abs(a.astype(int) - b).max()) <= 1 and float((a != b).mean()) < 1e-3


def test_live_with_a_black_map_is_the_main_net(tmp_path):
    from dynastream.stream.live import LiveConfig, LivePipeline

    black = tmp_path / "black.png"
    cv2.imwrite(str(black), np.zeros((8, 8), np.uint8))
    for alpha in (0, 1):
        (tmp_path / f"a{alpha}.yaml").write_text(f"keys:\n  - {{t: 0, alpha: {alpha}}}\n")
    shown = {}
    for name, alpha_map, alpha in (("black", str(black), 1), ("zero", None, 0)):
        frames = []
        config = LiveConfig(source="demo", models=(DEFAULT_MODEL,), device="cpu", backend="eager", headless=True,
                            frames=3, input_size=(64, 48), fps=30, keyframes=str(tmp_path / f"a{alpha}.yaml"),
                            alpha_map=alpha_map)
        LivePipeline(config, on_shown=lambda f, frames=frames: frames.append((f.index, f.rgb_hwc_u8.copy())),
                     report=lambda _: None).run()
        shown[name] = dict(frames)
    common = sorted(set(shown["black"]) & set(shown["zero"]))
    assert common and all(np.array_equal(shown["black"][i], shown["zero"][i]) for i in common)


# -- α from audio --------------------------------------------------------------------------------

BEATS_S = (0.5, 1.0, 1.6, 2.1)


def make_clicks(path, beats=BEATS_S, duration_s: float = 2.5, sample_rate: int = 44100, audio: bool = True):
    """A small video whose audio is quiet noise with a click at each beat."""
    rng = np.random.default_rng(0)
    sound = (0.002 * rng.standard_normal(int(duration_s * sample_rate))).astype(np.float32)
    n = int(0.02 * sample_rate)
    for b in beats:
        i = int(b * sample_rate)
        sound[i:i + n] += (0.8 * rng.standard_normal(n) * np.exp(-np.arange(n) / (0.004 * sample_rate))).astype(np.float32)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=25)
        v.width, v.height, v.pix_fmt = 48, 32, "yuv420p"
        a = None
        if audio:
            a = c.add_stream("aac", rate=sample_rate)
            a.layout = "mono"
        for k in range(int(duration_s * 25)):
            for p in v.encode(av.VideoFrame.from_ndarray(pattern_frame(k, 32, 48), format="rgb24")):
                c.mux(p)
        for start in range(0, sound.size if a else 0, 1024):
            frame = av.AudioFrame.from_ndarray(sound[None, start:start + 1024], format="flt", layout="mono")
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
            for p in a.encode(frame):
                c.mux(p)
        for stream in (v, a) if a else (v,):
            for p in stream.encode():
                c.mux(p)
    return path


def peaks(track):
    alpha, t = track.arrays.alpha_ns[:, 0], track.arrays.position
    return [float(t[i]) for i in range(1, len(alpha) - 1)
            if alpha[i] > 0.5 * alpha.max() and alpha[i] >= alpha[i - 1] and alpha[i] > alpha[i + 1]]


def test_track_from_audio_puts_keys_at_the_beats(tmp_path, capsys):
    from dynastream.stream.cli import main

    clip = make_clicks(tmp_path / "beats.mp4")
    out = tmp_path / "beats.yaml"
    assert main(["track", "from-audio", str(clip), "-o", str(out), "--model", "untrained:lite", "--low", "0.2",
                 "--high", "0.9", "--release", "0.1"]) == 0
    assert "wrote" in capsys.readouterr().out
    track = load_track(out, ("res3_in", "up1_in", "out_in"), (0.0, 1.0))     # an ordinary keyframe file
    found = peaks(track)
    assert len(found) == len(BEATS_S) and all(abs(f - b) <= 0.045 for f, b in zip(found, BEATS_S)), found
    alpha = track.arrays.alpha_ns
    assert alpha.min() >= 0.2 and 0.5 < alpha.max() <= 0.9 and (alpha == alpha[:, :1]).all()
    slow = tmp_path / "slow.csv"
    assert main(["track", "from-audio", str(clip), "-o", str(slow), "--model", "untrained:lite", "--attack", "0.5",
                 "--release", "1", "--feature", "rms"]) == 0
    smooth = load_track(slow, ("alpha",), (0.0, 1.0)).arrays.alpha_ns[:, 0]
    assert np.abs(np.diff(smooth)).max() < np.abs(np.diff(alpha[:, 0])).max() / 3   # slower attack: gentler


def test_render_alpha_from_audio_follows_the_beats(tmp_path):
    clip = make_clicks(tmp_path / "beats.mp4")
    out = tmp_path / "out.mkv"
    config = RenderConfig(model=DEFAULT_MODEL, device="cpu", video=VideoOptions("ffv1"),
                          audio=AudioOptions(release_s=0.1))
    stats = render(clip, out, config)
    assert stats.frames == 62 and stats.audio == ["copy"]
    frames, times = read_frames(out)
    main_only = render_at(tmp_path, clip, 0.0)
    change = [float(np.abs(f.astype(int) - m).mean()) for f, m in zip(frames, main_only)]
    on_beat = [max(change[round(b * 25):round(b * 25) + 2]) for b in BEATS_S]   # the key after the click
    between = [change[round((a + b) / 2 * 25)] for a, b in zip(BEATS_S, BEATS_S[1:])]
    assert min(on_beat) > 2 * max(between)


def render_at(tmp_path, clip, alpha):
    out = tmp_path / f"alpha{alpha}.mkv"
    render(clip, out, RenderConfig(model=DEFAULT_MODEL, device="cpu", alpha=alpha, video=VideoOptions("ffv1")))
    return [f.astype(int) for f in read_frames(out)[0]]


def test_bad_audio_options_exit_2_and_write_nothing(tmp_path, capsys):
    from dynastream.stream.cli import main

    clip = make_clicks(tmp_path / "beats.mp4")
    silent = make_clicks(tmp_path / "silent.mp4", audio=False)
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    cases = [
        (["track", "from-audio", str(clip), "-o", "T", "--attack", "0"], "--attack must be a number of seconds above 0"),
        (["track", "from-audio", str(clip), "-o", "T", "--high", "5"], "--high 5 is outside the model's range [0, 1]"),
        (["track", "from-audio", str(clip), "-o", "T", "--key-rate", "0.1"], "--key-rate must be from 1 to 1000"),
        (["track", "from-audio", str(silent), "-o", "T"], "has no audio stream to take alpha from"),
        (["track", "from-audio", str(image), "-o", "T"], "no audio stream"),
        (["track", "from-audio", str(clip), "-o", str(tmp_path / "t.txt")], "ends in .yaml, .yml or .csv"),
        (["render", str(silent), "-o", "V", "--alpha-from-audio"], "has no audio stream to take alpha from"),
        (["render", str(clip), "-o", "V", "--release", "0.2"], "--release shapes alpha taken from audio"),
        (["render", str(image), "-o", str(tmp_path / "o.png"), "--alpha-from-audio"], "needs a video with sound"),
    ]
    for args, message in cases:
        args = [str(tmp_path / "t.yaml") if a == "T" else str(tmp_path / "v.mp4") if a == "V" else a for a in args]
        if args[0] == "track":
            args += ["--model", "untrained:lite"]
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, (args, err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beats.mp4", "silent.mp4", "still.png"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_cuda_engine_with_maps_matches_the_cpu_and_a_new_map_needs_no_recapture(cuda_graphs):
    net = strong_net("dual")
    h, w = 48, 64
    frames = [pattern_frame(i, h, w) for i in range(2)]
    alpha_bs = np.array([[1.0, 0.8, 0.6], [-1.0, -0.5, 0.5]], np.float32)
    maps = two_maps(h, w)
    cpu = Engine(net, EngineConfig(device="cpu", backend="eager", max_batch=2, alpha_map=True), (h, w))
    gpu = Engine(net, EngineConfig(device="cuda", precision="fp32", max_batch=2, alpha_map=True,
                                   cuda_graphs=cuda_graphs), (h, w))
    assert gpu.info()["cuda_graphs"] == cuda_graphs
    for m in (maps, maps[::-1].copy(), np.zeros_like(maps)):     # each call a new map, read by the same graph
        expected = cpu.run(frames, alpha_bs, m).astype(np.int32)
        d = np.abs(gpu.run(frames, alpha_bs, m).astype(np.int32) - expected)
        assert d.mean() < 1.0 and d.max() <= 8       # cuDNN runs fp32 convolutions in TF32 by default
    gpu.submit(frames, alpha_bs, maps)               # two calls in flight: each slot keeps its own map
    gpu.submit(frames, alpha_bs, np.zeros_like(maps))
    first, second = gpu.collect().copy(), gpu.collect().copy()
    assert np.abs(first.astype(np.int32) - cpu.run(frames, alpha_bs, maps)).mean() < 1.0
    assert np.abs(second.astype(np.int32) - cpu.run(frames, alpha_bs, np.zeros_like(maps))).mean() < 1.0
