"""FID Inception-v3: architecture and key names of pytorch-fid's weights, safe loading, resizing vs PIL.

The real weights cannot be downloaded here, so loading is tested with random-weight files of the same
layout; the key names, shapes and entry count below are those of ``pt_inception-2015-12-05-6726825d.pth``
(pytorch-fid / torchvision layer definitions; 566 entries and 95,628,359 bytes as recorded publicly).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import shlex

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from ganforge.errors import CheckpointError, ConfigError, DataError
from ganforge.metrics import inception as inc
from ganforge.metrics.inception import (
    ENV_VAR,
    FID_WEIGHTS_NAME,
    FID_WEIGHTS_URL,
    FIDInceptionV3,
    KnownWeights,
    convert_to_safetensors,
    download_fid_inception,
    load_fid_inception,
    resize_for_inception,
)

# (key, shape) pairs of the published state dict, spread over every block type.
KNOWN_SHAPES = {
    "Conv2d_1a_3x3.conv.weight": (32, 3, 3, 3),
    "Conv2d_1a_3x3.bn.running_mean": (32,),
    "Conv2d_4a_3x3.conv.weight": (192, 80, 3, 3),
    "Mixed_5b.branch_pool.conv.weight": (32, 192, 1, 1),
    "Mixed_5d.branch5x5_2.conv.weight": (64, 48, 5, 5),
    "Mixed_6a.branch3x3.conv.weight": (384, 288, 3, 3),
    "Mixed_6e.branch7x7dbl_5.conv.weight": (192, 192, 1, 7),
    "Mixed_7a.branch3x3_2.conv.weight": (320, 192, 3, 3),
    "Mixed_7b.branch3x3_2a.conv.weight": (384, 384, 1, 3),
    "Mixed_7c.branch3x3dbl_1.conv.weight": (448, 2048, 1, 1),
    "Mixed_7c.branch_pool.conv.weight": (192, 2048, 1, 1),
    "Mixed_7c.branch_pool.bn.num_batches_tracked": (),
    "fc.weight": (1008, 2048),
    "fc.bias": (1008,),
}
N_ENTRIES = 566  # 94 conv+BN units x 6 tensors + fc weight and bias
N_PARAMS = 23_850_960  # trainable; plus 2 x 17,216 BN running statistics


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No test may see the user's real cache or environment variable."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.delenv("GANFORGE_HOME", raising=False)


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    """A state dict of the right layout whose every tensor differs from a fresh model's."""
    torch.manual_seed(0)
    state = FIDInceptionV3().state_dict()
    out = {}
    for k, v in state.items():
        out[k] = torch.randint_like(v, 0, 7) if not v.is_floating_point() else torch.rand_like(v) + 0.5
    return out


def _assert_loaded(model: FIDInceptionV3, state: dict[str, torch.Tensor]) -> None:
    got = model.state_dict()
    for k in ("Conv2d_1a_3x3.conv.weight", "Mixed_6c.branch7x7_2.bn.running_var", "fc.bias"):
        torch.testing.assert_close(got[k], state[k], rtol=0, atol=0)
    assert not model.training and not any(p.requires_grad for p in model.parameters())


# --- architecture ----------------------------------------------------------------------------------------
def test_random_weight_network_outputs_pool_and_logits():
    model = FIDInceptionV3()  # builds without any weights file
    torch.manual_seed(0)
    # He-normal convs keep activations O(1) through 94 layers, so the comparisons below mean something.
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    grey = torch.rand(2, 1, 32, 32) * 2 - 1
    with torch.no_grad():
        outs = [model(grey), model(torch.rand(2, 3, 64, 64) * 2 - 1)]
        as_rgb = model(grey.expand(-1, 3, -1, -1))
    for out in outs:
        assert out["pool"].shape == (2, 2048) and out["pool"].dtype == torch.float32
        assert out["logits"].shape == (2, 1008) and out["logits_unbiased"].shape == (2, 1008)
        assert all(torch.isfinite(v).all() for v in out.values())
        assert out["pool"].abs().max() > 1e-2 and (out["pool"] >= 0).all()  # mean of ReLU outputs
        torch.testing.assert_close(out["logits"], out["logits_unbiased"] + model.fc.bias)
    torch.testing.assert_close(outs[0]["pool"], as_rgb["pool"])  # grey is the same image repeated to RGB


def test_state_dict_matches_pytorch_fid_file_layout():
    model = FIDInceptionV3()
    sd = model.state_dict()
    assert len(sd) == N_ENTRIES
    for k, shape in KNOWN_SHAPES.items():
        assert tuple(sd[k].shape) == shape, k
    assert sum(p.numel() for p in model.parameters()) == N_PARAMS
    # The published file is these tensors plus serialisation overhead (names, headers): < 0.1% more.
    raw = sum(v.numel() * v.element_size() for v in sd.values())
    assert raw < inc.FID_WEIGHTS_SIZE < raw * 1.001
    # FID-specific structure: TF BatchNorm epsilon, bias-free convs, max pool only in Mixed_7c.
    convs = [m for m in model.modules() if isinstance(m, inc.BasicConv2d)]
    assert len(convs) == 94 and all(c.bn.eps == 1e-3 and c.conv.bias is None for c in convs)
    assert (model.Mixed_7b.pool, model.Mixed_7c.pool) == ("avg", "max")
    # A measuring instrument: a parent's .train() must not put BatchNorm into batch-statistics mode.
    torch.nn.Sequential(model).train()
    assert not any(m.training for m in model.modules())


def test_tf_average_pool_ignores_padding():
    # TF's SAME average pool divides by the real pixel count, so a constant map stays constant at the border.
    out = inc.tf_avg_pool3x3(torch.full((1, 2, 5, 5), 3.0))
    torch.testing.assert_close(out, torch.full_like(out, 3.0))


def test_input_contract_errors():
    model = FIDInceptionV3()
    with pytest.raises(DataError, match="1 or 3 channels"):
        model(torch.zeros(1, 2, 8, 8))
    with pytest.raises(DataError, match="float images"):
        model(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="resize_mode"):
        FIDInceptionV3(resize_mode="nearest")  # type: ignore[arg-type]


# --- loading -----------------------------------------------------------------------------------------------
def test_roundtrip_safetensors_pth_and_conversion(tmp_path, random_state):
    st = tmp_path / "w.safetensors"
    save_file(random_state, str(st))
    _assert_loaded(load_fid_inception(st), random_state)

    pth = tmp_path / "w.pth"
    torch.save(random_state, pth)
    _assert_loaded(load_fid_inception(str(pth)), random_state)

    out = convert_to_safetensors(pth)
    assert out == tmp_path / "w.safetensors"
    _assert_loaded(load_fid_inception(out), random_state)


def test_resolution_order_env_then_cache(tmp_path, monkeypatch, random_state):
    cache = inc.default_cache_dir()
    assert cache == tmp_path / "home" / ".cache" / "ganforge" / "weights"
    cache.mkdir(parents=True)
    # BN step counters are optional: a converter that dropped them still produces loadable weights.
    trimmed = {k: v for k, v in random_state.items() if not k.endswith("num_batches_tracked")}
    save_file(trimmed, str(cache / "pt_inception-2015-12-05-6726825d.safetensors"))
    _assert_loaded(load_fid_inception(), random_state)

    other = {k: v + 1 if v.is_floating_point() else v for k, v in random_state.items()}
    env_file = tmp_path / "env.safetensors"
    save_file(other, str(env_file))
    monkeypatch.setenv(ENV_VAR, str(env_file))
    _assert_loaded(load_fid_inception(), other)  # the env var wins over the cache

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "typo.pth"))
    with pytest.raises(CheckpointError, match="typo.pth"):
        load_fid_inception()  # a named file that is missing is an error, not a silent fallback


def test_missing_weights_message_names_url_and_cache_path():
    with pytest.raises(CheckpointError) as err:
        load_fid_inception()
    msg = str(err.value)
    assert "\n" not in msg
    assert FID_WEIGHTS_URL in msg and ENV_VAR in msg
    assert str(inc.default_cache_dir() / FID_WEIGHTS_NAME) in msg


def test_wrong_tensors_are_rejected(tmp_path):
    bad = tmp_path / "bad.safetensors"
    save_file({"foo": torch.zeros(2)}, str(bad))
    with pytest.raises(CheckpointError, match="not FID Inception weights"):
        load_fid_inception(bad)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_fid_inception(garbage)


def test_known_name_is_hash_checked_before_reading(tmp_path, monkeypatch):
    fake = tmp_path / FID_WEIGHTS_NAME
    torch.save({"a": torch.zeros(1)}, fake)
    with pytest.raises(CheckpointError, match="does not match the published"):
        load_fid_inception(fake)
    # With the table saying this file is genuine, the hash check passes and reading goes on.
    digest = hashlib.sha256(fake.read_bytes()).hexdigest()
    monkeypatch.setitem(inc.KNOWN_WEIGHTS, FID_WEIGHTS_NAME, KnownWeights(digest, fake.stat().st_size, "x"))
    with pytest.raises(CheckpointError, match="missing"):
        load_fid_inception(fake)


class _RunsShell:
    """Unpickling this calls os.system: exactly what a malicious .pth does."""

    def __init__(self, cmd: str) -> None:
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize("writer", ["torch.save", "raw pickle"])
def test_pickle_that_runs_code_is_refused(tmp_path, writer):
    marker = tmp_path / "pwned"
    # The code-running object comes first so that it, not the tensor's own reducer, meets the unpickler.
    payload = {"x": _RunsShell(f"touch {shlex.quote(str(marker))}"), "fc.weight": torch.zeros(1)}
    evil = tmp_path / "evil.pth"
    if writer == "torch.save":
        torch.save(payload, evil)
    else:
        evil.write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(CheckpointError, match=r"refused to load.*GLOBAL (posix|nt)\.system") as err:
        load_fid_inception(evil)
    assert not marker.exists()
    assert "\n" not in str(err.value) and "will likely succeed" not in str(err.value)  # no unsafe advice


# --- downloading --------------------------------------------------------------------------------------------
def test_download_verifies_hash_and_renames_atomically(tmp_path, monkeypatch):
    src = tmp_path / "served.bin"
    src.write_bytes(os.urandom(3000))
    good = hashlib.sha256(src.read_bytes()).hexdigest()
    dest_dir = tmp_path / "dl"
    dest_dir.mkdir()

    monkeypatch.setitem(inc.KNOWN_WEIGHTS, FID_WEIGHTS_NAME, KnownWeights("0" * 64, 3000, src.as_uri()))
    with pytest.raises(CheckpointError, match="expected 0000"):
        download_fid_inception(dest_dir)
    assert list(dest_dir.iterdir()) == []  # no partial file, no temp file left behind

    monkeypatch.setitem(inc.KNOWN_WEIGHTS, FID_WEIGHTS_NAME, KnownWeights(good, 3000, src.as_uri()))
    got = download_fid_inception(dest_dir)
    assert got == dest_dir / FID_WEIGHTS_NAME and got.read_bytes() == src.read_bytes()
    assert list(dest_dir.iterdir()) == [got]

    # Already present with the right hash: kept, no network needed.
    monkeypatch.setitem(inc.KNOWN_WEIGHTS, FID_WEIGHTS_NAME, KnownWeights(good, 3000, "file:///nonexistent"))
    assert download_fid_inception(dest_dir) == got
    # Default destination is the cache path that load_fid_inception searches; fetch errors are one line.
    with pytest.raises(CheckpointError, match="could not download"):
        download_fid_inception()
    assert not (inc.default_cache_dir() / FID_WEIGHTS_NAME).exists()


# --- resizing -----------------------------------------------------------------------------------------------
def _test_images(size: int) -> dict[str, np.ndarray]:
    """uint8 HWC images: noise (worst case), a smooth colour field, and hard edges."""
    rng = np.random.default_rng(size)
    yy, xx = np.mgrid[0:size, 0:size] / size
    smooth = np.stack([np.sin(6 * xx + 3 * yy), np.cos(9 * yy), 2 * xx * yy - 1], -1) * 127.5 + 127.5
    edges = ((xx > 0.5) ^ (yy > 0.3)).astype(np.float64) * 255
    return {
        "noise": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "smooth": smooth.round().clip(0, 255).astype(np.uint8),
        "edges": np.stack([edges, 255 - edges, edges / 2], -1).astype(np.uint8),
    }


def _ours(img: np.ndarray, mode: str = "bicubic-antialias") -> np.ndarray:
    """Resize through the module in ganforge's [-1, 1] units; returned in 0..255 units for comparison."""
    x = torch.from_numpy(img).permute(2, 0, 1)[None].double() / 127.5 - 1
    y = resize_for_inception(x.float(), mode)  # type: ignore[arg-type]
    return ((y[0].permute(1, 2, 0).double() + 1) * 127.5).numpy()


def _pil_float_bicubic(channel: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(channel.astype(np.float32), mode="F").resize((299, 299), Image.BICUBIC))


@pytest.mark.parametrize("size", [32, 512])  # upscaling and (antialiased) downscaling
def test_bicubic_antialias_matches_pil_bicubic(size):
    for name, img in _test_images(size).items():
        ours = _ours(img)
        # clean-fid's resizer: PIL BICUBIC on each channel as float32 ("F" mode), no quantisation.
        pil_f = np.stack([_pil_float_bicubic(img[..., c]) for c in range(3)], -1)
        assert np.abs(ours - pil_f).max() <= 0.05, name  # measured <= 0.003 grey levels
        # PIL's uint8 path rounds, and clips its intermediate horizontal pass to 0..255: where bicubic
        # overshoots (noise, hard edges) that clip matters, so compare with the same two-pass emulation.
        pil_u8 = np.asarray(Image.fromarray(img).resize((299, 299), Image.BICUBIC)).astype(np.float64)
        direct = np.abs(ours.round().clip(0, 255) - pil_u8).max()
        t = torch.from_numpy(img).permute(2, 0, 1)[None].float()
        kw = {"mode": "bicubic", "align_corners": False, "antialias": True}
        mid = torch.nn.functional.interpolate(t, size=(size, 299), **kw).round().clamp(0, 255)
        two = torch.nn.functional.interpolate(mid, size=(299, 299), **kw).round().clamp(0, 255)
        two_pass = np.abs(two[0].permute(1, 2, 0).numpy() - pil_u8).max()
        assert min(direct, two_pass) <= 2, name
        if name == "smooth":  # no overshoot to clip: the single-pass resize itself is within 1 level
            assert direct <= 1


def test_bilinear_modes_follow_their_coordinate_maps():
    ramp = torch.arange(32, dtype=torch.float32).expand(1, 1, 32, 32)  # value == column index
    k = torch.arange(299, dtype=torch.float64)
    tf1 = resize_for_inception(ramp, "tf1-bilinear")[0, 0, 0].double()
    torch.testing.assert_close(tf1, (k * 32 / 299).clamp(max=31), rtol=0, atol=1e-4)  # src = dst * in/out
    pt = resize_for_inception(ramp, "bilinear")[0, 0, 0].double()
    torch.testing.assert_close(pt, ((k + 0.5) * 32 / 299 - 0.5).clamp(0, 31), rtol=0, atol=1e-4)  # half-pixel
    x = torch.rand(1, 3, 598, 598)
    torch.testing.assert_close(resize_for_inception(x, "tf1-bilinear"), x[..., ::2, ::2], rtol=0, atol=0)
    same = torch.rand(1, 3, 299, 299)
    assert all(resize_for_inception(same, m) is same for m in inc.RESIZE_MODES)  # scale 1: untouched


def test_converted_file_records_its_source(tmp_path, random_state):
    pth = tmp_path / "w.pth"
    torch.save(random_state, pth)
    out = convert_to_safetensors(pth, tmp_path / "out" / "copy.safetensors")
    from safetensors import safe_open

    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["source"] == "w.pth"
    assert set(load_file(str(out))) == set(random_state)


def test_weights_path_that_is_a_folder_says_to_name_the_file(tmp_path, monkeypatch):
    from ganforge.errors import CheckpointError
    from ganforge.metrics.inception import resolve_weights_path

    monkeypatch.setenv("GANFORGE_INCEPTION", str(tmp_path))
    with pytest.raises(
        CheckpointError, match=r"is a folder; point it at the weights file itself, e\.g\. .*pt_inception"
    ):
        resolve_weights_path()


def test_the_extractor_runs_in_chunks_and_returns_cpu_features(tmp_path, random_state, monkeypatch):
    from ganforge.data import DataConfig, DataSpec
    from ganforge.metrics import extractors

    st = tmp_path / "w.safetensors"
    save_file(random_state, str(st))
    seen = []
    real_forward = FIDInceptionV3.forward
    monkeypatch.setattr(
        FIDInceptionV3, "forward", lambda self, x: seen.append(len(x)) or real_forward(self, x)
    )
    ext = extractors.get_extractor(
        "inception", DataConfig(name="digits"), DataSpec("image", (1, 8, 8)), str(st)
    )
    x = torch.rand(7, 1, 8, 8) * 2 - 1
    feats, probs = ext(x, batch_size=3)  # Extractor's batches (250 by default): never all n at once
    assert seen == [3, 3, 1] and feats.shape == (7, 2048) and probs.shape == (7, 1008)
    assert feats.device.type == "cpu" and probs.device.type == "cpu"
    whole = load_fid_inception(st)(x)
    torch.testing.assert_close(feats, whole["pool"], rtol=1e-4, atol=1e-5)


def test_the_weights_cache_follows_ganforge_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GANFORGE_HOME", str(tmp_path / "gh"))
    assert inc.default_cache_dir() == tmp_path / "gh" / "weights"
    assert str(tmp_path / "gh" / "weights" / FID_WEIGHTS_NAME) in inc.missing_weights_message()
