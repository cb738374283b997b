import re
import time

import numpy as np
import pytest

from dynastream.stream.keyframes import KeyframeError, Track, load_track, parse_csv, parse_yaml

SITES = ("res3_in", "up1_in", "out_in")
RANGE = (0.0, 1.0)


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_linear_step_smooth_on_time_keys(tmp_path):
    body = "keys:\n  - {t: 0.0, alpha: 0.0}\n  - {t: 2.0, alpha: 1.0}\n  - {t: 4.0, alpha: 0.5}\n"
    linear = load_track(write(tmp_path, "a.yaml", body), SITES, RANGE)
    step = load_track(write(tmp_path, "b.yaml", "interpolation: step\n" + body), SITES, RANGE)
    smooth = load_track(write(tmp_path, "c.yaml", "interpolation: smooth\n" + body), SITES, RANGE)
    assert linear.interpolation == "linear"
    np.testing.assert_allclose(linear.alpha_at(t=0.5), [0.25] * 3)
    np.testing.assert_allclose(linear.alpha_at(t=3.0), [0.75] * 3)
    np.testing.assert_allclose(linear.alpha_at(t=-1.0), [0.0] * 3)   # holds the ends
    np.testing.assert_allclose(linear.alpha_at(t=9.0), [0.5] * 3)
    np.testing.assert_allclose(step.alpha_at(t=1.99), [0.0] * 3)
    np.testing.assert_allclose(step.alpha_at(t=2.0), [1.0] * 3)
    np.testing.assert_allclose(smooth.alpha_at(t=0.5), [0.15625] * 3)  # 3u^2 - 2u^3 at u = 1/4
    np.testing.assert_allclose(smooth.alpha_at(t=1.0), [0.5] * 3)
    values = [smooth.alpha_at(t=x)[0] for x in np.linspace(0, 4, 81)]
    assert min(values) >= 0.0 and max(values) <= 1.0


def test_frame_keys_and_per_site_values(tmp_path):
    path = write(tmp_path, "k.yaml", "keys:\n  - {frame: 0, alpha: 0}\n"
                 "  - {frame: 10, alpha: {res3_in: 0.2, up1_in: 1.0, out_in: 0.5}}\n")
    track = load_track(path, SITES, RANGE)
    np.testing.assert_allclose(track.alpha_at(frame=5), [0.1, 0.5, 0.25], rtol=1e-6)
    np.testing.assert_allclose(track.alpha_at(frame=10), [0.2, 1.0, 0.5], rtol=1e-6)
    np.testing.assert_allclose(track.alpha_at(t=0.25, fps=20), [0.1, 0.5, 0.25], rtol=1e-6)
    with pytest.raises(ValueError, match="needs fps"):
        track.alpha_at(t=0.25)


def test_mixed_time_and_frame_keys_use_fps(tmp_path):
    path = write(tmp_path, "m.yaml", "keys:\n  - {t: 0, alpha: 0}\n  - {frame: 50, alpha: 1}\n  - {t: 3, alpha: 0}\n")
    track = load_track(path, SITES, RANGE)
    np.testing.assert_allclose(track.alpha_at(t=1.0, fps=25), [0.5] * 3)   # frame 50 = 2 s at 25 fps
    np.testing.assert_allclose(track.alpha_at(frame=25, fps=25), [0.5] * 3)
    np.testing.assert_allclose(track.alpha_at(t=2.5, fps=25), [0.5] * 3)


def test_two_keys_at_one_position_make_a_cut():
    track = parse_yaml("keys:\n  - {t: 0, alpha: 0}\n  - {t: 1, alpha: 0}\n  - {t: 1, alpha: 1}\n  - {t: 2, alpha: 1}\n",
                       SITES)
    np.testing.assert_allclose(track.alpha_at(t=0.999), [0.0] * 3)
    np.testing.assert_allclose(track.alpha_at(t=1.0), [1.0] * 3)


def test_csv_scalar_and_per_site(tmp_path):
    track = load_track(write(tmp_path, "a.csv", "t,alpha\n0,0\n# a comment\n2,1\n"), SITES, RANGE)
    np.testing.assert_allclose(track.alpha_at(t=1), [0.5] * 3)
    track = load_track(write(tmp_path, "b.csv", "frame,res3_in,up1_in,out_in\n0,0,0,0\n4,1,0.5,0\n"), SITES, RANGE)
    np.testing.assert_allclose(track.alpha_at(frame=2), [0.5, 0.25, 0.0])


@pytest.mark.parametrize("suffix", [".yaml", ".csv"])
def test_save_and_reload_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(0.01, 0.1, 20))
    alphas = rng.uniform(0, 1, (20, 3)).astype(np.float32)
    track = Track.from_samples(times, alphas, SITES)
    reloaded = load_track(track.save(tmp_path / f"rec{suffix}"), SITES, RANGE)
    for t, a in zip(times, alphas):
        np.testing.assert_array_equal(reloaded.alpha_at(t=float(t)), a)


def test_alpha_into_writes_in_place():
    track = parse_csv("t,alpha\n0,0\n1,1\n", SITES)
    out = np.zeros(3, np.float32)
    assert track.alpha_into(out, t=0.5) is out
    np.testing.assert_allclose(out, [0.5] * 3)


@pytest.mark.parametrize("name,text,message", [
    ("a.yaml", "keys: [\n", "a.yaml: line 2: not valid YAML"),
    ("a.yaml", "[1, 2]\n", "expected a mapping"),
    ("a.yaml", "interp: linear\nkeys: [{t: 0, alpha: 0}]\n", "unknown top-level key 'interp'"),
    ("a.yaml", "interpolation: cubic\nkeys: [{t: 0, alpha: 0}]\n", "interpolation must be one of"),
    ("a.yaml", "keys: []\n", "non-empty list"),
    ("a.yaml", "keys:\n  - {t: 0, alpha: 0}\n  - {t: 1}\n", "line 3 (key #2): the key has no alpha"),
    ("a.yaml", "keys:\n  - {t: 0, frame: 3, alpha: 0}\n", "line 2 (key #1): a key needs exactly one of"),
    ("a.yaml", "keys:\n  - {t: -1, alpha: 0}\n", "t must be a number of seconds >= 0"),
    ("a.yaml", "keys:\n  - {frame: 1.5, alpha: 0}\n", "frame must be a whole number"),
    ("a.yaml", "keys:\n  - {t: 0, alpha: high}\n", "alpha must be a finite number"),
    ("a.yaml", "keys:\n  - {t: 0, alpha: {res3_in: 1}}\n", "misses site(s) up1_in, out_in"),
    ("a.yaml", "keys:\n  - {t: 0, alpha: {res9: 1, res3_in: 1, up1_in: 1, out_in: 1}}\n", "unknown site 'res9'"),
    ("a.yaml", "keys:\n  - {t: 0, alpha: 1.5}\n", "line 2 (key #1): alpha 1.5 for res3_in is outside"),
    ("a.yaml", "keys:\n  - {t: 0, alpha: 0, speed: 2}\n", "unknown field 'speed'"),
    ("a.csv", "", "the file is empty"),
    ("a.csv", "time,alpha\n0,0\n", "line 1: the header must be"),
    ("a.csv", "t,alpha\n", "no keys"),
    ("a.csv", "t,alpha\n0,0\n1,x\n", "line 3: values must be numbers"),
    ("a.csv", "t,alpha\n0,0,1\n", "line 2: expected 2 values"),
    ("a.csv", "t,bogus\n0,0\n", "unknown column 'bogus'"),
    ("a.txt", "t,alpha\n0,0\n", "must end in .yaml"),
])
def test_errors_name_file_line_and_problem(tmp_path, name, text, message):
    with pytest.raises(KeyframeError) as err:
        load_track(write(tmp_path, name, text), SITES, RANGE)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_extrapolation_allowed_on_request(tmp_path):
    path = write(tmp_path, "x.yaml", "keys:\n  - {t: 0, alpha: 1.5}\n")
    assert load_track(path, SITES, RANGE, allow_extrapolation=True).alpha_at(t=0)[0] == 1.5
    with pytest.raises(KeyframeError, match="does not exist"):
        load_track(tmp_path / "missing.yaml", SITES, RANGE)


def _hour_of_samples(fps: float = 60.0, per_site: bool = True) -> tuple[np.ndarray, np.ndarray]:
    times = np.arange(int(3600 * fps)) / fps
    alphas = (0.5 + 0.5 * np.sin(times[:, None] * np.array([1.0, 1.3, 0.7]))).astype(np.float32)
    return times, (alphas if per_site else np.repeat(alphas[:, :1], 3, axis=1))


@pytest.mark.parametrize("suffix, per_site", [(".yaml", False), (".yaml", True), (".csv", True)])
def test_a_recorded_hour_loads_through_the_fast_line_reader(tmp_path, monkeypatch, suffix, per_site):
    """216,000 keys (an hour at 60 fps): the form Track.save writes is read line by line (about
    0.3 s for YAML, 0.5 s for CSV on an idle core), never through the YAML parser (tens of
    seconds and gigabytes for an hour). Checked by what runs, not by a clock."""
    from dynastream.nets import yamlfile

    times, alphas = _hour_of_samples(per_site=per_site)
    path = Track.from_samples(times, alphas, SITES).save(tmp_path / f"hour{suffix}")
    def no_yaml_parser(*args, **kwargs):
        raise AssertionError("a recorded track went through the YAML parser")
    monkeypatch.setattr(yamlfile, "parse_with_node", no_yaml_parser)
    monkeypatch.setattr(yamlfile, "parse", no_yaml_parser)
    track = load_track(path, SITES, RANGE)
    np.testing.assert_array_equal(track.arrays.position, times)
    np.testing.assert_array_equal(track.arrays.alpha_ns, alphas)
    np.testing.assert_array_equal(track.alpha_at(t=1800.0), alphas[108000])


FREE_FORM_TWINS = [
    "keys:\n  - {t: 0, alpha: 0}\n  - {t: 1.5, alpha: 1}\n",
    "interpolation: smooth\nkeys:\n- {frame: 0, alpha: 0.25}\n- {frame: 12, alpha: {out_in: 1.0, res3_in: 0., up1_in: -0.0}}\n",
    "interpolation: step\nkeys:\n\n  # a comment\n  - {t: 2.0e-05, alpha: 9.999999747378752e-06}\n  - {t: 7, alpha: 0.5}\n",
    "keys:\n  - {t: 0, alpha: 0}\r\n  - {frame: 50, alpha: 1}\r\n  - {t: 3, alpha: 0.1}\r\n",
]


@pytest.mark.parametrize("text", FREE_FORM_TWINS)
def test_the_line_reader_and_the_yaml_reader_agree(text):
    """The fast form Track.save writes gives what the YAML reader gives (a leading document
    marker sends the same text through the YAML reader)."""
    from dynastream.stream.keyframes import _parse_recorded_yaml

    fast = _parse_recorded_yaml(text, SITES, "k.yaml")
    slow = parse_yaml("---\n" + text.replace("\r\n", "\n"), SITES, "k.yaml")
    assert fast is not None and _parse_recorded_yaml("---\n" + text, SITES, "k.yaml") is None
    assert fast.interpolation == slow.interpolation and fast.axes == slow.axes
    np.testing.assert_array_equal(fast.arrays.frame_axis, slow.arrays.frame_axis)
    np.testing.assert_array_equal(fast.arrays.position, slow.arrays.position)
    np.testing.assert_array_equal(fast.arrays.alpha_ns, slow.arrays.alpha_ns)


@pytest.mark.parametrize("text", [
    "keys:\n  - {t: 1e-05, alpha: 0}\n",          # YAML 1.1: a string, not a number
    "keys:\n  - {t: 017, alpha: 0}\n",            # octal in YAML 1.1
    "keys:\n  - {t: 0, alpha: 0}\n - {t: 1, alpha: 0}\n",   # indentation changes
    "keys:\n  - {t: 0, alpha: {res3_in: 1, res3_in: 1, up1_in: 1}}\n",
    "keys:\n  - {t: 0, alpha: 0}  # comment\n",
])
def test_anything_else_goes_to_the_yaml_reader(text):
    from dynastream.stream.keyframes import _parse_recorded_yaml

    assert _parse_recorded_yaml(text, SITES, "k.yaml") is None


def test_tiny_alphas_survive_a_yaml_round_trip(tmp_path):
    """repr(1e-05) has no dot, which YAML 1.1 reads as a string: save writes 1.0e-05."""
    alphas = np.array([[1e-8] * 3, [3.2e-06, 0.5, 1e-30], [1.0] * 3], np.float32)
    track = Track.from_samples([0.0, 1e-05, 2.0], alphas, SITES)
    reloaded = load_track(track.save(tmp_path / "tiny.yaml"), SITES, RANGE)
    np.testing.assert_array_equal(reloaded.arrays.alpha_ns, alphas)
    np.testing.assert_array_equal(reloaded.arrays.position, [0.0, 1e-05, 2.0])


@pytest.mark.parametrize("name, text, message", [
    ("n.yaml", "keys:\n  - {t: 0, alpha: .nan}\n", "line 2 (key #1): alpha must be a finite number, not nan"),
    ("n.yaml", "keys:\n  - {t: .inf, alpha: 0}\n", "t must be a number of seconds >= 0, not inf"),
    ("n.csv", "t,alpha\n0,0\n1,nan\n", "line 3: alpha must be a finite number, not nan"),
    ("n.csv", "t,alpha\n0,0\ninf,1\n", "line 3: t must be a number of seconds >= 0, not inf"),
    ("n.csv", "frame,alpha\n0,0\n2.5,1\n", "line 3: frame must be a whole number >= 0, not 2.5"),
    ("n.csv", "t,res3_in,up1_in\n0,0,0\n", "line 1: per-site columns miss site(s) out_in"),
])
def test_non_finite_numbers_are_refused_naming_the_line(tmp_path, name, text, message):
    with pytest.raises(KeyframeError, match=re.escape(message)):
        load_track(write(tmp_path, name, text), SITES, RANGE)


def test_recorded_samples_must_be_finite():
    with pytest.raises(KeyframeError, match="sample #2: alpha must be a finite number, not nan"):
        Track.from_samples([0.0, 0.1], np.array([[0.0] * 3, [np.nan] * 3]), SITES)


def test_absurd_track_sizes_are_refused_quickly(tmp_path):
    huge = tmp_path / "huge.csv"
    with open(huge, "wb") as f:
        f.truncate(65 << 20)                  # sparse: refused on its size, never read
    many = write(tmp_path, "many.csv", "t,alpha\n" + "\n" * 1_100_000)
    free_form = write(tmp_path, "free.yaml", "keys:\n" + "  - {t: 1, alpha: 0}   # a comment\n" * 400_000)
    for path, message in ((huge, "is 68 MB, more than the 64 MB a track may have"),
                          (many, "has 1100001 lines, more than a track of at most 1000000 keys needs"),
                          (free_form, "write a long track as CSV")):
        t0 = time.perf_counter()
        with pytest.raises(KeyframeError, match=message):
            load_track(path, SITES, RANGE)
        assert time.perf_counter() - t0 < 1.0


def test_long_bad_values_are_shown_short(tmp_path):
    with pytest.raises(KeyframeError) as err:
        load_track(write(tmp_path, "l.csv", "t,alpha\n0," + "x" * 100_000 + "\n"), SITES, RANGE)
    assert len(str(err.value)) < 200 and str(err.value).endswith("…")
