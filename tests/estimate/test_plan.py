"""``nhance-batch plan``: frame and chunk counts equal the real run's, broken inputs are listed
with their errors (exit 1), estimates follow the calibration and the measured GPU rates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from nhance_batch.cli import cli
from nhance_batch.config import ChunkConfig, EncodeConfig, LimitsConfig, ModelConfig
from nhance_batch.estimate import calibration as cal
from nhance_batch.estimate import plan_job, sizing, timing
from nhance_batch.rates import load_rates, parse_rates
from tests.media.makemedia import make_video
from tests.pipeline.conftest import make_broken


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def clips(tmp_path):
    folder = tmp_path / "in"
    a = make_video(folder / "a.mp4", width=64, height=48, frames=23)
    make_video(folder / "sub" / "b.mkv", width=48, height=32, frames=9, audio_tracks=1)
    return folder, Path(a)


def _plan_json(runner, *args):
    result = runner.invoke(cli, ["plan", *map(str, args), "--json", "--no-calibrate"])
    return result.exit_code, json.loads(result.output) if result.output.strip() else None


@pytest.mark.parametrize("chunk_args,memory", [(["--chunk-frames", "6"], None),
                                               ([], str((7 + 2 * 3) * 64 * 48 * 20))])
def test_frames_and_chunks_equal_the_real_run(runner, clips, tmp_path, monkeypatch,
                                              chunk_args, memory):
    """Fixed chunks, and chunks sized to the frames (NHANCE_CHUNK_MEMORY shrunk so that the
    sizing matters): the plan's counts are what the run's manifest records."""
    if memory:
        monkeypatch.setenv("NHANCE_CHUNK_MEMORY", memory)
    folder, _ = clips
    code, plan = _plan_json(runner, folder, *chunk_args)
    assert code == 0, plan
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(folder), str(out), "--executor", "sequential",
                                 "--lossless", *chunk_args])
    assert result.exit_code == 0, result.output
    import pyarrow.parquet as pq

    table = pq.read_table(out / "_nhance" / "manifest.parquet").to_pylist()
    recorded = {row["input"]: (row["frames"], len(row["chunks"])) for row in table}
    planned = {v["input"]: (v["frames"], v["chunks"]) for v in plan["videos"]}
    assert planned == recorded
    assert sorted(f for f, _ in planned.values()) == [9, 23]
    if memory:  # 64x48 frames: 7 a chunk within the budget; 48x32 ones fit more
        by_name = {Path(v["input"]).name: v for v in plan["videos"]}
        assert by_name["a.mp4"]["chunk_frames"] == 7 and by_name["a.mp4"]["chunks"] == 4
    assert plan["total"]["frames"] == 32
    assert plan["total"]["chunks"] == sum(c for _, c in planned.values())


def test_broken_inputs_are_listed_with_errors_and_exit_1(runner, clips, tmp_path):
    folder, good = clips
    broken = make_broken(folder / "bad", good)
    code, plan = _plan_json(runner, folder)
    assert code == 1
    by_name = {Path(v["input"]).name: v for v in plan["videos"]}
    for path in broken.values():
        entry = by_name[path.name]
        assert entry["error"] and str(path) in entry["error"], entry
        assert entry["frames"] is None and entry["tflop"] is None
    assert by_name["a.mp4"]["error"] is None and by_name["a.mp4"]["frames"] == 23
    assert plan["total"]["failed"] == len(broken) and plan["total"]["usable"] == 2
    assert plan["total"]["frames"] == 32  # broken inputs count for nothing
    # the same errors the run records
    out = tmp_path / "out"
    result = runner.invoke(cli, ["run", str(folder), str(out), "--executor", "sequential",
                                 "--lossless"])
    assert result.exit_code == 1
    import pyarrow.parquet as pq

    rows = {Path(r["input"]).name: r for r in
            pq.read_table(out / "_nhance" / "manifest.parquet").to_pylist()}
    for path in broken.values():
        assert rows[path.name]["status"] == "failed"
        assert rows[path.name]["error"] == by_name[path.name]["error"]


def test_json_contract_and_exit_codes(runner, clips, tmp_path):
    folder, good = clips
    code, plan = _plan_json(runner, good, "--gpus", "3")
    assert code == 0
    assert set(plan) >= {"videos", "total", "calibration"}
    video = plan["videos"][0]
    assert set(video) >= {"input", "frames", "width", "height", "chunks", "tflop", "error"}
    assert (video["width"], video["height"], video["frames"]) == (64, 48, 23)
    # one chunk of 23 frames at 64x48 (no context at the ends): 23 frames enhanced
    assert video["tflop"] == pytest.approx(23 * 64 * 48 * 2 * 399_744 / 1e12, rel=1e-5)
    assert set(plan["total"]) >= {"frames", "tflop", "seconds_here", "seconds_per_gpu_kind"}
    assert plan["total"]["seconds_here"] is None and plan["calibration"] is None
    assert "H100" in plan["total"]["seconds_per_gpu_kind"]
    assert all(e["gpus"] == 3 and e["sources"] for e in plan["gpu_estimates"])
    result = runner.invoke(cli, ["plan", str(tmp_path / "nothing-here"), "--no-calibrate"])
    assert result.exit_code == 2 and "error" in result.output
    result = runner.invoke(cli, ["plan", str(good), "--no-calibrate", "--gpu-kind", "Z80"])
    assert result.exit_code == 2 and "H100" in result.output
    result = runner.invoke(cli, ["plan", str(good), "--no-calibrate"])  # the human table
    assert result.exit_code == 0 and "23" in result.output and "on 1 x H100" in result.output


def _fake_calibration(**over) -> cal.Calibration:
    values = dict(key="k", machine={"cores": 2}, width=64, height=48, enhance_mpx_s=0.5,
                  enhance_sizes=[[64, 48, 0.5]], startup_s=4.0, shape_s=2.0,
                  decode_mpx_s=50.0, encode_mpx_s=10.0, encode_bytes_per_px=1.5, gpu=False,
                  measured_at="now", seconds=1.0)
    return cal.Calibration(**{**values, **over})


def _plan(path, calibration=None, **kw):
    return plan_job(str(path), model=kw.pop("model", ModelConfig()),
                    chunk=kw.pop("chunk", ChunkConfig(chunk_frames=10)),
                    encode=kw.pop("encode", EncodeConfig()), limits=LimitsConfig(),
                    calibration=calibration, **kw)


def test_time_here_from_the_calibration_with_start_up(clips):
    _, good = clips
    plan = _plan(good, _fake_calibration())
    # chunks of 10 with 3 context frames: [0,13) [7,23) [17,23) -> 13 + 16 + 6 = 35 frames
    video = plan.videos[0]
    assert video.enhanced_frames == 35 and video.chunks == 3
    px = 64 * 48 / 1e6
    # CPU-only: the stages share the cores, and Ray's processes take a share of the two cores
    rate = 0.5 * (2 - timing.RAY_CORES) / 2
    expected = 35 * px / rate + 35 * px / 50.0 + 23 * px / 10.0
    assert video.seconds_here == pytest.approx(expected, abs=1e-3)
    # start-up: the command and Ray, the actor's start, one frame size's first call
    startup = plan.total["startup_here"]
    assert startup == {"command_and_ray": pytest.approx(timing.run_overhead()),
                       "enhancer_actor": 4.0, "frame_sizes": 2.0}
    assert plan.total["seconds_here"] == pytest.approx(
        timing.run_overhead() + 4.0 + 2.0 + expected, abs=2e-3)
    # on a GPU, decoding and encoding overlap the enhancer: the first chunk's decode, every
    # chunk's enhancement, the last chunk's encode
    gpu = _plan(good, _fake_calibration(gpu=True)).videos[0]
    assert gpu.seconds_here == pytest.approx(13 * px / 50 + 35 * px / 0.5 + 3 * px / 10,
                                             abs=1e-3)
    # Ray's start and stop, where the calibration measured them
    measured = _plan(good, _fake_calibration(ray_s=9.0)).total
    assert measured["startup_here"]["command_and_ray"] == pytest.approx(timing.COMMAND_S + 9.0)
    assert measured["seconds_here"] == pytest.approx(
        timing.COMMAND_S + 9.0 + 4.0 + 2.0 + expected, abs=2e-3)
    called = []
    plan = _plan(good.parent / "nothing*.mp4", lambda: called.append(1))
    assert not plan.videos and not called  # no usable input: no calibration


def test_every_frame_size_pays_its_first_call(clips):
    folder, _ = clips  # 64x48 and 48x32
    calibration = _fake_calibration(enhance_sizes=[[48, 32, 0.25], [64, 48, 0.5]])
    plan = _plan(folder, calibration)
    assert plan.total["startup_here"]["frame_sizes"] == 2 * 2.0
    work = sum(v.seconds_here for v in plan.videos)
    assert plan.total["seconds_here"] == pytest.approx(
        timing.run_overhead() + 4.0 + 4.0 + work, abs=2e-3)
    small = {Path(v.input).name: v for v in plan.videos}["b.mkv"]  # 9 frames, one chunk
    px = 48 * 32 / 1e6
    rate = 0.25 * timing.cpu_share(2)
    assert small.seconds_here == pytest.approx(9 * px / rate + 9 * px / 50 + 9 * px / 10,
                                               abs=1e-3)


def test_enhancer_rate_interpolates_between_calibrated_sizes():
    calibration = _fake_calibration(enhance_sizes=[[100, 100, 1.0], [300, 100, 0.6]])
    assert calibration.enhance_rate(50, 50) == 1.0  # held below the smallest
    assert calibration.enhance_rate(200, 100) == pytest.approx(0.8)
    assert calibration.enhance_rate(1000, 1000) == 0.6  # held above the largest


def test_gpu_schedule_is_bounded_by_the_chunks():
    chunk = timing.ChunkWork(decode=0.0, enhance=10.0, encode=0.0)
    assert timing.gpu_seconds([chunk] * 2, 8) == timing.gpu_seconds([chunk] * 2, 2) == 10.0
    assert timing.gpu_seconds([chunk] * 2, 1) == 20.0
    assert timing.gpu_seconds([chunk] * 5, 2) == 30.0  # ceil(5 / 2) chunk-times
    # the last chunk's encode ends the job; the nodes' encode capacity bounds it
    tail = timing.ChunkWork(decode=1.0, enhance=10.0, encode=3.0)
    assert timing.gpu_seconds([tail] * 2, 2) == 14.0
    assert timing.gpu_seconds([tail] * 2, 2, encode_capacity_s=50.0) == 50.0
    assert timing.cpu_seconds([tail] * 2) == 28.0
    assert timing.cpu_share(2) == pytest.approx(0.9) and timing.cpu_share(1) == 0.8


def test_two_chunks_on_eight_gpus_are_no_faster_than_on_two(tmp_path):
    clip = make_video(tmp_path / "hd.mp4", width=1280, height=720, frames=8)
    chunking = ChunkConfig(chunk_frames=4, overlap=0)
    per_gpus = {g: _plan(clip, chunk=chunking, gpus=g, sample_output=False)
                for g in (1, 2, 8)}
    seconds = {g: p.total["seconds_per_gpu_kind"]["H100"] for g, p in per_gpus.items()}
    assert seconds[8] == seconds[2] < seconds[1]
    est = per_gpus[8].gpu_estimates[0]
    assert est["chunks"] == 2 and est["gpus_used"] == 2
    assert any("only 2 of the 8 GPUs get work" in note for note in per_gpus[8].notes)
    # start-up counts: the command, Ray, the GPU actor
    assert est["startup_seconds"] == pytest.approx(timing.run_overhead()
                                                   + timing.GPU_ACTOR_START_S)
    assert est["seconds"] > est["startup_seconds"] > 0


def test_gpu_estimates_follow_the_measured_rates(tmp_path):
    clip = make_video(tmp_path / "hd.mp4", width=1280, height=720, frames=3)
    startup = timing.run_overhead() + timing.GPU_ACTOR_START_S
    f32 = _plan(clip, chunk=ChunkConfig(chunk_frames=3), gpus=2)
    est = {e["kind"]: e for e in f32.gpu_estimates}["H100"]
    # one chunk of 3 frames at the measured 138 fps: a second GPU has nothing to do; 16 cores
    # encode 141.8 fps per node
    assert est["enhance_seconds"] == pytest.approx(3 / 138, abs=1e-3)
    assert est["encode_seconds"] == pytest.approx(3 / 141.8 / 2, abs=1e-3)
    assert est["seconds"] == pytest.approx(startup + 3 / 138 + 3 / 141.8, abs=1e-3)
    assert est["bound"] == "enhancer"
    bf16 = _plan(clip, chunk=ChunkConfig(chunk_frames=3), gpus=1,
                 model=ModelConfig(precision="bfloat16"))
    est = bf16.gpu_estimates[0]
    assert est["bound"] == "encoder"
    assert est["seconds"] == pytest.approx(startup + 3 / 230 + 3 / 141.8, abs=1e-3)
    assert any("bfloat16" in s for s in est["sources"])
    f16 = _plan(clip, chunk=ChunkConfig(chunk_frames=3), model=ModelConfig(precision="float16"))
    assert f16.total["seconds_per_gpu_kind"] == {} and "no measured float16" in f16.notes[0]


def test_output_bytes_from_bytes_per_frame_and_pixels():
    sample = sizing.SizeSample("x", "libx264", 100, 100, 16, first_bytes=5000,
                               frame_bytes=1000.0, key_growth=1.5, frame_growth=2.0)
    # one part: one key frame, 99 further frames, each grown by the enhancer
    assert sizing.output_bytes(sample, 100, 100, 100, 1) == int(1.5 * 5000 + 2.0 * 99 * 1000)
    # three parts: a key frame each; four times the pixels: four times the bytes
    assert sizing.output_bytes(sample, 200, 200, 100, 3) == int(
        4 * (1.5 * 3 * 5000 + 2.0 * 97 * 1000))
    # a key frame at least every KEY_INTERVAL frames
    frames = 3 * sizing.KEY_INTERVAL
    assert sizing.output_bytes(sample, 100, 100, frames, 1) == int(
        1.5 * 3 * 5000 + 2.0 * (frames - 3) * 1000)


def test_samples_are_spread_over_the_video():
    assert sizing.sample_windows(100) == [(0, 8), (46, 54), (92, 100)]
    assert sizing.sample_windows(20) == [(0, 8), (12, 20)]
    assert sizing.sample_windows(5) == [(0, 5)]


def test_plan_sizes_outputs_from_samples_of_their_frames(clips, monkeypatch):
    folder, _ = clips
    taken = []

    def fake_sample(path, info, encode, source=None, enhance=None):
        taken.append(Path(source).name)
        return sizing.SizeSample(source, "libx264", info.width, info.height, 4, 3000, 500.0,
                                 key_growth=2.0, frame_growth=2.0)

    monkeypatch.setattr(sizing, "sample_size", fake_sample)
    monkeypatch.setattr(sizing, "SAMPLED_VIDEOS", 1)
    plan = _plan(folder, chunk=ChunkConfig(chunk_frames=100))
    by_name = {Path(v.input).name: v for v in plan.videos}
    assert taken == ["a.mp4"]  # one sample: the second video scales from it
    a, b = by_name["a.mp4"], by_name["b.mkv"]
    factor = 2.0
    assert a.output_bytes == int(factor * (3000 + 22 * 500))
    assert b.output_bytes == int(factor * (48 * 32) / (64 * 48) * (3000 + 8 * 500))
    assert plan.total["output_bytes"] == a.output_bytes + b.output_bytes
    assert len(plan.total["output_samples"]) == 1


def test_growth_measured_on_the_first_sample_holds_for_all(clips, monkeypatch):
    folder, _ = clips
    given = []

    def fake_sample(path, info, encode, source=None, enhance=None):
        given.append((Path(source).name, enhance is not None))
        growth = (1.2, 2.5) if enhance is not None else (sizing.TYPICAL_GROWTH,) * 2
        return sizing.SizeSample(source, "libx264", info.width, info.height, 4, 3000, 500.0,
                                 *growth, growth_measured=enhance is not None)

    monkeypatch.setattr(sizing, "sample_size", fake_sample)
    monkeypatch.setattr(sizing, "lazy_enhancer", lambda model: lambda frames: frames)
    plan = _plan(folder, chunk=ChunkConfig(chunk_frames=100), enhance_sample=True)
    assert given == [("a.mp4", True), ("b.mkv", False)]  # the enhancer runs once
    by_name = {Path(v.input).name: v for v in plan.videos}
    assert by_name["b.mkv"].output_bytes == int(1.2 * 3000 + 2.5 * 8 * 500)
    assert all(s["frame_growth"] == 2.5 for s in plan.total["output_samples"])
    assert "measured with the enhancer" in plan.total["output_bytes_basis"]


@pytest.mark.parametrize("lossless", [False, True])
def test_size_sample_encodes_the_videos_own_frames(tmp_path, lossless):
    from nhance_batch.media import probe

    clip = make_video(tmp_path / "c.mp4", width=64, height=48, frames=20)
    info = probe(clip, decode_first_frame=False)
    sample = sizing.sample_size(str(clip), info, EncodeConfig(lossless=lossless))
    assert sample.frames == 16 and (sample.width, sample.height) == (64, 48)  # two runs of 8
    assert sample.codec == ("ffv1" if lossless else "libx264")
    assert sample.first_bytes > 0 and sample.frame_bytes > 0
    assert sample.key_growth == sample.frame_growth == sizing.TYPICAL_GROWTH
    assert not sample.growth_measured


def test_growth_is_measured_by_enhancing_a_crop(tmp_path, monkeypatch):
    """A stand-in enhancer that adds noise makes the frames costlier to encode; one that
    flattens them, cheaper; frames given back unchanged cost the same."""
    from nhance_batch.media import probe

    clip = make_video(tmp_path / "c.mp4", width=320, height=180, frames=24)
    info = probe(clip, decode_first_frame=False)
    rng = np.random.default_rng(0)
    shapes = []

    def noisy(frames):
        shapes.append(frames.shape)
        noise = rng.integers(0, 40, frames.shape, dtype=np.uint8)
        return np.clip(frames.astype(np.int16) + noise, 0, 255).astype(np.uint8)

    monkeypatch.setattr(sizing, "GROWTH_CROP", (256, 144))
    grows = sizing.sample_size(str(clip), info, EncodeConfig(), enhance=noisy)
    assert grows.growth_measured and grows.key_growth > 1.5 and grows.frame_growth > 1.5
    assert shapes == [(8, 144, 256, 3)] * 3  # the central crop of each run of frames
    same = sizing.sample_size(str(clip), info, EncodeConfig(), enhance=lambda f: f.copy())
    assert same.key_growth == same.frame_growth == 1.0
    flat = sizing.sample_size(str(clip), info, EncodeConfig(),
                              enhance=lambda f: np.full_like(f, 128))
    assert flat.key_growth < 1.0 and flat.frame_growth < 0.5  # the container stays
    assert sizing.output_bytes(grows, 320, 180, 24, 1) == int(
        grows.key_growth * grows.first_bytes + grows.frame_growth * 23 * grows.frame_bytes)


def test_rate_table_interpolates_and_names_sources():
    table = load_rates()
    rate, rows = table.enhancer_rate("H100", "float32", 1600, 900)
    low, high = 138 * 1280 * 720 / 1e6, 62 * 1920 * 1080 / 1e6
    share = (1600 * 900 - 1280 * 720) / (1920 * 1080 - 1280 * 720)
    assert rate == pytest.approx(low + share * (high - low))
    assert len(rows) == 2 and all("gpu_dped.py" in r.source for r in rows)
    assert table.enhancer_rate("H100", "float32", 64, 48)[0] == pytest.approx(low)
    assert table.encoder_rate("H100", "libx264", 18, "medium").fps == 141.8
    assert table.encoder_rate("H100", "libx264", 18, "veryfast") is None
    with pytest.raises(ValueError):
        parse_rates('[[enhancer]]\nkind="X"\ndevice="X"\nprecision="float32"\nwidth=1\n'
                    'height=1\nfps=1.0\nsource=""\n')


def test_calibration_is_cached_per_machine_and_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("NHANCE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cal, "CPU_SIZES", ((32, 24), (64, 48)))
    monkeypatch.setattr(cal, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(cal, "MEDIA_FRAMES", 4)
    monkeypatch.setattr(cal, "PASS_PIXELS", 2 * 64 * 48)
    model, encode = ModelConfig(batch_size=1), EncodeConfig()
    first = cal.load_or_calibrate(model, encode)
    assert not first.cached and first.enhance_mpx_s > 0 and first.startup_s > 0
    assert [row[:2] for row in first.enhance_sizes] == [[32, 24], [64, 48]]
    assert first.ray_s > 0  # the embedded Ray started and stopped as a run does it
    assert (first.width, first.height) == (64, 48) and first.shape_s >= 0
    assert first.decode_mpx_s > 0 and first.encode_mpx_s > 0
    assert first.machine["cores"] >= 1 and first.machine["model"] == "iphone"
    assert (tmp_path / "cache" / "calibration.json").is_file()
    again = cal.load_or_calibrate(model, encode)
    assert again.cached and again.enhance_mpx_s == first.enhance_mpx_s
    other = cal.machine_description(ModelConfig(batch_size=1, precision="bfloat16"), encode)
    assert cal.calibration_key(other) != first.key
    assert cal.cached(cal.calibration_key(other)) is None
    fresh = cal.load_or_calibrate(model, encode, refresh=True)
    assert not fresh.cached and fresh.measured_at >= first.measured_at


def test_plan_decodes_nothing(clips, monkeypatch):
    """The plan's probe reads packets only: with decoding made impossible it still counts the
    same frames as the run's probe."""
    import importlib

    probe_mod = importlib.import_module("nhance_batch.media.probe")
    _, good = clips
    full = probe_mod.probe(good)

    def no_decoding(*args, **kwargs):
        raise AssertionError("the plan decoded a frame")

    monkeypatch.setattr(probe_mod, "_decode_quietly", no_decoding)
    plan = _plan(good)
    assert plan.videos[0].frames == full.frame_count == 23
    assert probe_mod.probe(good, decode_first_frame=False).pts == full.pts
